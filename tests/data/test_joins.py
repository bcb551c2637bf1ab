"""Key joins check cardinality first; as-of joins never look into the future."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keelson.data.joins import join
from keelson.errors import ContractError
from keelson.spec import Join

ORDERS = pl.DataFrame(
    {"order_id": [1, 2, 3, 4], "customer_id": [10, 20, 10, 99], "amount": [5.0, 7.5, 1.0, 2.0]}
)
CUSTOMERS = pl.DataFrame(
    {"customer_id": [10, 20, 30], "amount": [100, 200, 300], "tier": ["a", "b", "c"]}
)
T0 = datetime(2024, 1, 1)


def _join(
    left: pl.DataFrame, right: pl.DataFrame, source: str = "customers", **fields: Any
) -> tuple[pl.DataFrame, dict[str, Any]]:
    spec = Join.model_validate({"source": source, "keys": ["customer_id"], **fields})
    return join(left, right, spec, "integrate.joins[0]")


def _at(*minutes: int | None) -> list[datetime | None]:
    return [None if m is None else T0 + timedelta(minutes=m) for m in minutes]


# --- key joins -------------------------------------------------------------------


def test_left_join_with_stats_and_clash_suffix() -> None:
    table, stat = _join(ORDERS, CUSTOMERS)
    assert table.to_dict(as_series=False) == {
        "order_id": [1, 2, 3, 4],
        "customer_id": [10, 20, 10, 99],
        "amount": [5.0, 7.5, 1.0, 2.0],
        "amount_customers": [100, 200, 100, None],
        "tier": ["a", "b", "a", None],
    }
    assert stat == {
        "source": "customers",
        "keys": ["customer_id"],
        "how": "left",
        "as_of": None,
        "rows_before": 4,
        "rows_after": 4,
        "unmatched_left": 1,
    }


def test_inner_join_with_text_and_number_keys() -> None:
    customers = CUSTOMERS.with_columns(pl.col("customer_id").cast(pl.String))
    table, stat = _join(ORDERS, customers, how="inner")
    assert table["order_id"].to_list() == [1, 2, 3]
    assert (stat["rows_after"], stat["unmatched_left"]) == (3, 1)


def test_numeric_keys_widen() -> None:
    customers = CUSTOMERS.with_columns(pl.col("customer_id").cast(pl.Float64))
    table, _ = _join(ORDERS, customers)
    assert table["tier"].to_list() == ["a", "b", "a", None]


def test_m_to_1_violation_names_join_and_key() -> None:
    with pytest.raises(ContractError) as err:
        _join(ORDERS, pl.concat([CUSTOMERS, CUSTOMERS.head(1)]))
    message = str(err.value)
    assert message.startswith("integrate.joins[0].validate:")
    assert "'customers'" in message and "m:1" in message and "customer_id=10 on 2 rows" in message


def test_1_to_1_checks_the_left_side_1_to_m_only_the_left_and_m_to_m_fans_out() -> None:
    with pytest.raises(ContractError, match="the left table has duplicated keys"):
        _join(ORDERS, CUSTOMERS, validate="1:1")
    doubled = pl.concat([CUSTOMERS, CUSTOMERS.head(1)])
    with pytest.raises(ContractError, match="the left table has duplicated keys"):
        _join(ORDERS, doubled, validate="1:m")
    unique_left = ORDERS.unique("customer_id", keep="first", maintain_order=True)
    table, stat = _join(unique_left, doubled, validate="1:m")
    assert stat["rows_after"] == table.height == 4
    table, stat = _join(ORDERS, doubled, validate="m:m")
    assert stat["rows_after"] == table.height == 6


def test_null_keys_are_not_duplicates_and_do_not_match() -> None:
    customers = pl.DataFrame({"customer_id": [10, None, None], "tier": ["a", "x", "y"]})
    orders = ORDERS.with_columns(pl.Series("customer_id", [10, None, 10, 99]))
    table, stat = _join(orders, customers)
    assert table["tier"].to_list() == ["a", None, "a", None]
    assert stat["unmatched_left"] == 2


def test_missing_keys_name_the_side_and_suggest() -> None:
    with pytest.raises(ContractError, match=r"right side of the join with 'customers'"):
        _join(ORDERS, CUSTOMERS.rename({"customer_id": "customer"}))
    with pytest.raises(ContractError, match=r"'cust_id' is not in the left side.*did you mean"):
        join(ORDERS, CUSTOMERS, Join(source="customers", keys=["cust_id"]), "integrate.joins[1]")


def test_keys_that_cannot_be_compared() -> None:
    customers = CUSTOMERS.with_columns(pl.col("customer_id").map_elements(lambda v: [v]))
    with pytest.raises(ContractError, match=r"integrate.joins\[0\].keys: .*cannot be compared"):
        _join(ORDERS, customers)


def test_a_suffixed_name_that_exists_is_refused() -> None:
    customers = CUSTOMERS.with_columns(amount_customers=pl.lit(1))
    with pytest.raises(ContractError, match=r"would create \['amount_customers'\]"):
        _join(ORDERS, customers)


# --- as-of joins ---------------------------------------------------------------------

PRICES = pl.DataFrame(
    {
        "sku": ["a", "a", "a", "b"],
        "t": _at(0, 10, 20, 5),
        "price": [1.0, 2.0, 3.0, 9.0],
    }
)
SALES = pl.DataFrame(
    {
        "sale": [1, 2, 3, 4, 5, 6],
        "sku": ["a", "a", "b", "a", "c", "b"],
        "t": _at(16, 10, 4, 25, 12, None),
    }
)


def _as_of(
    left: pl.DataFrame = SALES,
    right: pl.DataFrame = PRICES,
    keys: list[str] | None = None,
    **kw: Any,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    how = kw.pop("how", "left")
    validate = kw.pop("validate", "m:1")
    spec = Join.model_validate(
        {
            "source": "prices",
            "keys": ["sku"] if keys is None else keys,
            "how": how,
            "validate": validate,
            "as_of": {"left_on": "t", "right_on": "t", **kw},
        }
    )
    return join(left, right, spec, "integrate.joins[0]")


def test_as_of_takes_the_last_row_at_or_before_and_keeps_the_left_order() -> None:
    table, stat = _as_of()
    assert table.columns == ["sale", "sku", "t", "t_prices", "price"]
    assert table["sale"].to_list() == [1, 2, 3, 4, 5, 6]
    assert table["price"].to_list() == [2.0, 2.0, None, 3.0, None, None]
    assert table["t_prices"].to_list() == _at(10, 10, None, 20, None, None)
    assert table.schema["t"] == SALES.schema["t"]
    assert stat == {
        "source": "prices",
        "keys": ["sku"],
        "how": "left",
        "as_of": {
            "left_on": "t",
            "right_on": "t",
            "tolerance": None,
            "strategy": "backward",
            "allow_exact_matches": True,
        },
        "rows_before": 6,
        "rows_after": 6,
        "unmatched_left": 3,
    }


def test_as_of_inner_drops_and_counts_unmatched_rows() -> None:
    table, stat = _as_of(how="inner")
    assert table["sale"].to_list() == [1, 2, 4]
    assert (stat["rows_after"], stat["unmatched_left"]) == (3, 3)


@pytest.mark.parametrize(
    ("options", "prices"),
    [
        ({"tolerance": "4m"}, [None, 2.0, None, None, None, None]),
        ({"allow_exact_matches": False}, [2.0, 1.0, None, 3.0, None, None]),
        ({"strategy": "forward"}, [3.0, 2.0, 9.0, None, None, None]),
        ({"strategy": "forward", "tolerance": "2m"}, [None, 2.0, 9.0, None, None, None]),
        ({"strategy": "nearest"}, [3.0, 2.0, 9.0, 3.0, None, None]),
    ],
)
def test_as_of_options(options: dict[str, Any], prices: list[float | None]) -> None:
    table, _ = _as_of(**options)
    assert table["price"].to_list() == prices


def test_as_of_without_keys_uses_time_alone() -> None:
    table, _ = _as_of(right=PRICES.drop("sku"), keys=[])
    assert table["price"].to_list() == [2.0, 2.0, 1.0, 3.0, 2.0, None]


def test_as_of_null_right_times_never_match() -> None:
    prices = PRICES.with_columns(pl.Series("t", _at(0, None, 20, 5)))
    table, _ = _as_of(right=prices)
    assert table["price"].to_list() == [1.0, 1.0, None, 3.0, None, None]


def test_as_of_different_names_keep_both_time_columns() -> None:
    prices = PRICES.rename({"t": "valid_from"})
    spec = Join.model_validate(
        {"source": "prices", "keys": ["sku"], "as_of": {"left_on": "t", "right_on": "valid_from"}}
    )
    table, _ = join(SALES, prices, spec, "integrate.joins[0]")
    assert table["valid_from"].to_list() == _at(10, 10, None, 20, None, None)


def test_as_of_compares_instants_across_time_zones() -> None:
    # 10:00 in Paris (winter) is 09:00 UTC; naive left times are UTC by convention
    paris = PRICES.with_columns(
        (pl.col("t") + pl.duration(hours=1)).dt.replace_time_zone("Europe/Paris")
    )
    table, _ = _as_of(right=paris)
    assert table["price"].to_list() == [2.0, 2.0, None, 3.0, None, None]
    assert table.schema["t"] == pl.Datetime("us")
    tokyo = SALES.with_columns(
        (pl.col("t") + pl.duration(hours=9)).dt.replace_time_zone("Asia/Tokyo")
    )
    table, _ = _as_of(left=tokyo, right=paris.with_columns(pl.col("t").dt.cast_time_unit("ns")))
    assert table["price"].to_list() == [2.0, 2.0, None, 3.0, None, None]
    assert table.schema["t"] == pl.Datetime("us", "Asia/Tokyo")


def test_as_of_on_dates_and_dates_against_datetimes() -> None:
    left = pl.DataFrame({"d": [date(2024, 1, 3), date(2024, 1, 1)]})
    right = pl.DataFrame({"d": [date(2024, 1, 2)], "v": ["x"]})
    spec = Join.model_validate({"source": "r", "as_of": {"left_on": "d", "right_on": "d"}})
    table, _ = join(left, right, spec, "j")
    assert table["v"].to_list() == ["x", None]
    table, _ = join(left, right.with_columns(pl.col("d").cast(pl.Datetime("ms"))), spec, "j")
    assert table["v"].to_list() == ["x", None]


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        (
            SALES.with_columns(pl.col("t").cast(pl.String)),
            PRICES,
            r"as_of.left_on: .*'t' is String",
        ),
        (SALES, PRICES.with_columns(pl.col("t").dt.epoch("s")), r"as_of.right_on: .*'t' is Int64"),
        (SALES.rename({"t": "time"}), PRICES, r"as_of.left_on: column 't' is not in the left"),
    ],
)
def test_as_of_time_columns_must_be_dates_or_datetimes(
    left: pl.DataFrame, right: pl.DataFrame, expected: str
) -> None:
    with pytest.raises(ContractError, match=expected):
        _as_of(left=left, right=right)


def test_as_of_validate_checks_entity_and_time() -> None:
    doubled = pl.concat([PRICES, PRICES.head(1)])
    with pytest.raises(ContractError, match=r"validate: .*sku='a', t=datetime.*on 2 rows"):
        _as_of(right=doubled)
    table, _ = _as_of(right=doubled, validate="m:m")
    assert table.height == SALES.height
    with pytest.raises(ContractError, match="the left table has duplicated keys"):
        _as_of(left=pl.concat([SALES, SALES.head(1)]), validate="1:1")


# --- properties: never the future, and the same answer as a brute-force search ---------------

_entities = st.one_of(st.none(), st.integers(0, 1))
_minutes = st.one_of(st.none(), st.integers(0, 40))
_tolerances = st.one_of(st.none(), st.integers(0, 12))


def _right(draw: st.DrawFn) -> pl.DataFrame:
    rows = draw(
        st.lists(st.tuples(st.integers(0, 1), st.integers(0, 40)), max_size=20, unique=True)
    )
    return pl.DataFrame(
        {"k": [k for k, _ in rows], "t": _at(*(m for _, m in rows)), "rid": range(len(rows))},
        schema={"k": pl.Int64, "t": pl.Datetime("us"), "rid": pl.Int64},
    )


@st.composite
def _random_case(draw: st.DrawFn) -> tuple[pl.DataFrame, pl.DataFrame]:
    left = draw(st.lists(st.tuples(_entities, _minutes), max_size=25))
    left_frame = pl.DataFrame(
        {"k": [k for k, _ in left], "t": _at(*(m for _, m in left))},
        schema={"k": pl.Int64, "t": pl.Datetime("us")},
    )
    return left_frame, _right(draw)


@st.composite
def _dense_case(draw: st.DrawFn) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Every entity (and null) at every minute (and null): each gap size is probed."""
    minutes = [*range(41), None]
    left = pl.DataFrame(
        {"k": [k for k in (0, 1, None) for _ in minutes], "t": _at(*minutes) * 3},
        schema={"k": pl.Int64, "t": pl.Datetime("us")},
    )
    return left.sample(fraction=1.0, shuffle=True, seed=draw(st.integers(0, 99))), _right(draw)


def _eligible(
    key: int | None,
    at: datetime | None,
    right: pl.DataFrame,
    options: dict[str, Any],
) -> list[dict[str, Any]]:
    """Right rows a left row may take, by brute force over every right row."""
    if key is None or at is None:
        return []
    tolerance, exact = options["tolerance"], options["allow_exact_matches"]
    sides = {
        "backward": lambda d: d > 0 or (exact and d == 0),
        "forward": lambda d: d < 0 or (exact and d == 0),
        "nearest": lambda d: d != 0 or exact,
    }[options["strategy"]]
    return [
        r
        for r in right.iter_rows(named=True)
        if r["k"] == key
        and sides(d := (at - r["t"]) / timedelta(minutes=1))
        and (tolerance is None or abs(d) <= tolerance)
    ]


def _run(
    left: pl.DataFrame, right: pl.DataFrame, how: str = "left", **options: Any
) -> tuple[pl.DataFrame, dict[str, Any]]:
    tolerance = options.pop("tolerance")
    return _as_of(
        left.with_row_index("lid"),
        right,
        keys=["k"],
        how=how,
        tolerance=None if tolerance is None else f"{tolerance}m",
        **options,
    )


@settings(max_examples=60, deadline=None)
@given(case=_random_case(), tolerance=_tolerances, exact=st.booleans())
def test_as_of_never_takes_a_right_row_from_after_the_left_time(
    case: tuple[pl.DataFrame, pl.DataFrame], tolerance: int | None, exact: bool
) -> None:
    left, right = case
    table, stat = _run(left, right, tolerance=tolerance, allow_exact_matches=exact)
    assert table["lid"].to_list() == list(range(left.height))
    matched = table.filter(pl.col("rid").is_not_null())
    assert stat["unmatched_left"] == left.height - matched.height
    for row in matched.iter_rows(named=True):
        assert row["t_prices"] <= row["t"] if exact else row["t_prices"] < row["t"]
        if tolerance is not None:
            assert row["t_prices"] >= row["t"] - timedelta(minutes=tolerance)
        assert right.row(row["rid"], named=True)["k"] == row["k"]


@settings(max_examples=40, deadline=None)
@given(
    case=_dense_case(),
    strategy=st.sampled_from(["backward", "forward", "nearest"]),
    tolerance=_tolerances,
    exact=st.booleans(),
    how=st.sampled_from(["left", "inner"]),
)
def test_as_of_matches_a_brute_force_reference(
    case: tuple[pl.DataFrame, pl.DataFrame],
    strategy: str,
    tolerance: int | None,
    exact: bool,
    how: str,
) -> None:
    left, right = case
    options = {"strategy": strategy, "tolerance": tolerance, "allow_exact_matches": exact}
    table, stat = _run(left, right, how, **options)
    chosen = dict(zip(table["lid"].to_list(), table["rid"].to_list(), strict=True))
    unmatched = 0
    for lid, (key, at) in enumerate(left.iter_rows()):
        eligible = _eligible(key, at, right, options)
        if not eligible:
            unmatched += 1
            assert chosen.get(lid) is None and (how == "left") == (lid in chosen)
            continue
        best = min(abs((at - r["t"]).total_seconds()) for r in eligible)
        pick = right.row(chosen[lid], named=True)
        assert pick in eligible and abs((at - pick["t"]).total_seconds()) == best
    assert stat["unmatched_left"] == unmatched
