"""Integration runs unions, then joins from the base, then derives, then drops."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import polars as pl
import pytest

from keelson.data.integrate import Integration, integrate
from keelson.errors import ContractError
from keelson.spec import Integrate

ORDERS = pl.DataFrame(
    {
        "order_id": [1, 2, 3, 4],
        "customer_id": [10, 20, 10, 99],
        "amount": [5.0, 7.5, 1.0, 2.0],
        "at": [datetime(2024, 1, d) for d in (5, 6, 20, 7)],
    }
)
CRM = pl.DataFrame({"customer_id": [10, 20], "tier": ["a", None], "seen": [1, 1]})
ERP = pl.DataFrame({"customer_id": [20, 30], "tier": ["b", "c"], "seen": [2, 2]})
RATES = pl.DataFrame(
    {"customer_id": [10, 10, 20], "since": [datetime(2024, 1, d) for d in (1, 10, 1)]}
).with_columns(rate=pl.Series([0.1, 0.2, 0.3]))
FRAMES = {"orders": ORDERS, "crm": CRM, "erp": ERP, "rates": RATES}
UNION = {"name": "customers", "sources": ["crm", "erp"], "keys": ["customer_id"]}


def _spec(**fields: Any) -> Integrate:
    return Integrate.model_validate(fields)


def test_unions_then_joins_then_derive_then_drop() -> None:
    result = integrate(
        FRAMES,
        _spec(
            base="orders",
            unions=[{**UNION, "default": "priority"}],
            joins=[
                {"source": "customers", "keys": ["customer_id"]},
                {
                    "source": "rates",
                    "keys": ["customer_id"],
                    "as_of": {"left_on": "at", "right_on": "since"},
                },
            ],
            derive={"cost": "amount * rate", "vip": "tier = 'a'"},
            drop=["seen", "since"],
        ),
    )
    assert isinstance(result, Integration)
    columns = ["order_id", "customer_id", "amount", "at", "tier", "rate", "cost", "vip"]
    assert result.table.columns == columns
    assert result.table["tier"].to_list() == ["a", "b", "a", None]
    assert result.table["rate"].to_list() == [0.1, 0.3, 0.2, None]
    cost = result.table["cost"].to_list()
    assert cost[:3] == pytest.approx([0.5, 2.25, 0.2]) and cost[3] is None
    assert result.derived == ["cost", "vip"]
    assert [u.summary()["merged"] for u in result.unions] == [1]
    assert [(j["source"], j["as_of"] is not None, j["unmatched_left"]) for j in result.joins] == [
        ("customers", False, 1),
        ("rates", True, 1),
    ]


def test_a_union_can_be_the_base() -> None:
    result = integrate(
        FRAMES, _spec(base="customers", unions=[UNION | {"timestamp": "seen"}], drop=["seen"])
    )
    assert result.table.rows() == [(10, "a"), (20, "b"), (30, "c")]
    assert result.joins == [] and result.unions[0].name == "customers"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"base": "crm", "unions": [UNION | {"default": "priority"}]},
            r"integrate.base: source 'crm' was merged into union 'customers'. Use 'customers'",
        ),
        (
            {
                "base": "orders",
                "unions": [UNION | {"default": "priority"}],
                "joins": [{"source": "erp", "keys": ["customer_id"]}],
            },
            r"integrate.joins\[0\].source: source 'erp' was merged into union 'customers'",
        ),
        (
            {
                "base": "orders",
                "unions": [
                    UNION | {"default": "priority"},
                    {**UNION, "name": "again", "default": "priority"},
                ],
            },
            r"integrate.unions\[1\].sources: source 'crm' was merged into union 'customers'",
        ),
        (
            {"base": "orders", "unions": [UNION | {"name": "rates", "default": "priority"}]},
            r"integrate.unions\[0\].name: union name 'rates' is already the name of a table",
        ),
        ({"base": "nowhere"}, r"integrate.base: no table for source 'nowhere'"),
        (
            {"base": "orders", "unions": [UNION | {"default": "priority", "keys": ["id"]}]},
            r"integrate.unions\[0\].keys: column 'id' is not in source 'crm'",
        ),
        (
            {"base": "orders", "joins": [{"source": "crm", "keys": ["customer"]}]},
            r"integrate.joins\[0\].keys: column 'customer' is not in the left side",
        ),
        ({"base": "orders", "derive": {"x": "amount +* 2"}}, r"integrate.derive.x: the expression"),
        ({"base": "orders", "derive": {"x": "nope"}}, r"integrate.derive.x: .*\"nope\""),
        ({"base": "orders", "drop": ["amout"]}, r"integrate.drop: column 'amout' .*'amount'"),
    ],
)
def test_errors_name_the_key_path(fields: dict[str, Any], expected: str) -> None:
    with pytest.raises(ContractError, match=expected):
        integrate(FRAMES, _spec(**fields))


def test_a_union_may_reuse_the_name_of_one_of_its_sources() -> None:
    result = integrate(
        FRAMES,
        _spec(base="crm", unions=[UNION | {"name": "crm", "default": "priority"}]),
    )
    assert result.table["customer_id"].to_list() == [10, 20, 30]


def test_derive_runs_after_joins_and_before_drop() -> None:
    result = integrate(
        FRAMES,
        _spec(
            base="orders",
            joins=[{"source": "crm", "keys": ["customer_id"], "how": "inner"}],
            derive={"label": "concat(tier, '-', order_id)"},
            drop=["tier", "seen"],
        ),
    )
    assert result.table["label"].to_list() == ["a-1", "-2", "a-3"]  # SQL concat skips nulls
    assert result.joins[0]["rows_after"] == 3


def test_without_spec_needs_exactly_one_frame() -> None:
    result = integrate({"orders": ORDERS}, None)
    assert result.table is ORDERS
    assert (result.joins, result.unions, result.derived) == ([], [], [])
    with pytest.raises(ContractError, match="no 'integrate' section"):
        integrate({"orders": ORDERS, "customers": CRM}, None)
