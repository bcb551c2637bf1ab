"""Integration checks every join before running it and reports what each join did."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from keelson.data.integrate import integrate
from keelson.errors import ContractError
from keelson.spec import Integrate

ORDERS = pl.DataFrame(
    {"order_id": [1, 2, 3, 4], "customer_id": [10, 20, 10, 99], "amount": [5.0, 7.5, 1.0, 2.0]}
)
CUSTOMERS = pl.DataFrame(
    {"customer_id": [10, 20, 30], "amount": [100, 200, 300], "tier": ["a", "b", "c"]}
)


def _spec(**fields: Any) -> Integrate:
    return Integrate.model_validate(fields)


def _join(source: str = "customers", **fields: Any) -> dict[str, Any]:
    return {"source": source, "keys": ["customer_id"], **fields}


def test_left_join_with_stats_clash_suffix_and_drop() -> None:
    table, stats = integrate(
        {"orders": ORDERS, "customers": CUSTOMERS},
        _spec(base="orders", joins=[_join()], drop=["order_id"]),
    )
    assert table.to_dict(as_series=False) == {
        "customer_id": [10, 20, 10, 99],
        "amount": [5.0, 7.5, 1.0, 2.0],
        "amount_customers": [100, 200, 100, None],
        "tier": ["a", "b", "a", None],
    }
    assert stats == [
        {
            "source": "customers",
            "keys": ["customer_id"],
            "how": "left",
            "rows_before": 4,
            "rows_after": 4,
            "unmatched_left": 1,
        }
    ]


def test_inner_join_and_key_dtype_mismatch() -> None:
    customers = CUSTOMERS.with_columns(pl.col("customer_id").cast(pl.String))
    table, stats = integrate(
        {"orders": ORDERS, "customers": customers},
        _spec(base="orders", joins=[_join(how="inner")]),
    )
    assert table["order_id"].to_list() == [1, 2, 3]
    assert (stats[0]["rows_after"], stats[0]["unmatched_left"]) == (3, 1)


def test_numeric_keys_widen() -> None:
    customers = CUSTOMERS.with_columns(pl.col("customer_id").cast(pl.Float64))
    table, _ = integrate(
        {"orders": ORDERS, "customers": customers}, _spec(base="orders", joins=[_join()])
    )
    assert table["tier"].to_list() == ["a", "b", "a", None]


def test_m_to_1_violation_names_join_and_key() -> None:
    customers = pl.concat([CUSTOMERS, CUSTOMERS.head(1)])
    with pytest.raises(ContractError) as err:
        integrate({"orders": ORDERS, "customers": customers}, _spec(base="orders", joins=[_join()]))
    message = str(err.value)
    assert "integrate.joins[0].validate" in message
    assert "'customers'" in message and "m:1" in message and "customer_id=10" in message


def test_1_to_1_checks_the_left_side_and_m_to_m_allows_fan_out() -> None:
    frames = {"orders": ORDERS, "customers": CUSTOMERS}
    with pytest.raises(ContractError, match="the left table has duplicated keys"):
        integrate(frames, _spec(base="orders", joins=[_join(validate="1:1")]))
    customers = pl.concat([CUSTOMERS, CUSTOMERS.head(1)])
    table, stats = integrate(
        {"orders": ORDERS, "customers": customers},
        _spec(base="orders", joins=[_join(validate="m:m")]),
    )
    assert stats[0]["rows_after"] == table.height == 6


def test_null_keys_are_not_duplicates() -> None:
    customers = pl.DataFrame({"customer_id": [10, None, None], "tier": ["a", "x", "y"]})
    table, _ = integrate(
        {"orders": ORDERS, "customers": customers}, _spec(base="orders", joins=[_join()])
    )
    assert table["tier"].to_list() == ["a", None, "a", None]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"joins": [{"source": "customers", "keys": ["cust_id"]}]}, "column 'cust_id' is not in"),
        ({"drop": ["nope"]}, r"integrate.drop: column 'nope' is not in the integrated table"),
    ],
)
def test_unknown_columns(spec: dict[str, Any], expected: str) -> None:
    with pytest.raises(ContractError, match=expected):
        integrate({"orders": ORDERS, "customers": CUSTOMERS}, _spec(base="orders", **spec))


def test_missing_key_on_the_right_side() -> None:
    with pytest.raises(ContractError, match="right side of the join with 'customers'"):
        integrate(
            {"orders": ORDERS, "customers": CUSTOMERS.drop("customer_id")},
            _spec(base="orders", joins=[_join()]),
        )


def test_keys_that_cannot_be_compared() -> None:
    customers = CUSTOMERS.with_columns(pl.col("customer_id").map_elements(lambda v: [v]))
    with pytest.raises(ContractError, match="cannot be compared"):
        integrate({"orders": ORDERS, "customers": customers}, _spec(base="orders", joins=[_join()]))


def test_without_spec_needs_exactly_one_frame() -> None:
    table, stats = integrate({"orders": ORDERS}, None)
    assert table is ORDERS and stats == []
    with pytest.raises(ContractError, match="no 'integrate' section"):
        integrate({"orders": ORDERS, "customers": CUSTOMERS}, None)
