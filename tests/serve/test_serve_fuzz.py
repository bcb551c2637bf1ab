"""Whatever JSON a client posts, the answer is never a 5xx."""

from __future__ import annotations

import json
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .helpers import INFER

SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()  # NaN and ±Infinity included: Python's JSON reads them
    | st.text(max_size=8)
    | st.sampled_from(["basic", "pro", "30", "", "NaN"])
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=16,
)
names = st.sampled_from(["age", "income", "plan", "other"]) | st.text(max_size=6)
COLUMNS = ["age", "income", "plan"]
# Mostly well-typed values, datatypes and shapes, sometimes anything: many bodies reach
# the model, and every check on the way is exercised.
plausible = {
    "age": st.integers(-5, 120) | st.none(),
    "income": st.floats(-1e6, 1e6) | st.integers(-5, 5) | st.none(),
    "plan": st.sampled_from(["basic", "plus", "pro", "gold", ""]) | st.none(),
}
datatypes = {
    "age": st.sampled_from(["INT64", "INT32", "UINT8"]),
    "income": st.sampled_from(["FP64", "FP32", "INT64"]),
    "plan": st.just("BYTES"),
}
any_datatype = st.sampled_from(["INT64", "FP64", "BYTES", "BOOL", "FP16", "INT128", ""])


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Values of ``good`` nine times in ten, of ``bad`` otherwise."""
    return st.integers(0, 9).flatmap(lambda dice: bad if dice == 0 else good)


def column_names(draw: st.DrawFn) -> list[str]:
    return draw(mostly(st.just(COLUMNS), st.lists(names, max_size=4, unique=True)))


@st.composite
def v2_tensor(draw: st.DrawFn, name: str, rows: int) -> dict[str, Any]:
    value = plausible.get(name, scalars)
    data = draw(
        mostly(st.lists(value, min_size=rows, max_size=rows), st.lists(scalars, max_size=4))
    )
    shapes = st.sampled_from([[len(data)], [len(data), 1]])
    shape = draw(mostly(shapes, st.lists(st.integers(-1, 4), max_size=3)))
    if draw(st.booleans()):
        data = [[v] for v in data]
    return {
        "name": name,
        "datatype": draw(mostly(datatypes.get(name, any_datatype), any_datatype | json_values)),
        "shape": shape,
        "data": draw(mostly(st.just(data), json_values)),
    }


@st.composite
def v2_bodies(draw: st.DrawFn) -> dict[str, Any]:
    rows = draw(st.integers(0, 3))
    body: dict[str, Any] = {"inputs": [draw(v2_tensor(name, rows)) for name in column_names(draw)]}
    if draw(st.booleans()):
        body["outputs"] = [{"name": draw(st.sampled_from(["label", "probabilities"]) | names)}]
    if draw(st.booleans()):
        body["id"] = draw(mostly(st.text(max_size=8), json_values))
    return body


@st.composite
def invocation_bodies(draw: st.DrawFn) -> dict[str, Any]:
    keys = column_names(draw)
    values = {key: mostly(plausible.get(key, scalars), json_values) for key in keys}
    records = draw(st.lists(st.fixed_dictionaries(values), max_size=3))
    shapes = {
        "dataframe_split": {"columns": keys, "data": [list(r.values()) for r in records]},
        "dataframe_records": records,
        "instances": records,
        "inputs": draw(st.sampled_from([records, {k: [r[k] for r in records] for k in keys}])),
    }
    formats = list(shapes)
    one = st.sampled_from(formats).map(lambda name: [name])
    chosen = draw(mostly(one, st.lists(st.sampled_from(formats), max_size=3, unique=True)))
    return {name: shapes[name] for name in chosen}


def post(client: httpx.Client, path: str, body: Any) -> httpx.Response:
    content = json.dumps(body)  # allow_nan: NaN and Infinity reach the server
    return client.post(path, content=content, headers={"content-type": "application/json"})


@SETTINGS
@given(body=json_values)
def test_random_json_never_gets_a_5xx(client: httpx.Client, body: Any) -> None:
    for path in (INFER, "/invocations"):
        response = post(client, path, body)
        assert response.status_code < 500, response.text
        assert "error" in response.json()


@SETTINGS
@given(body=v2_bodies())
def test_random_v2_bodies_never_get_a_5xx(client: httpx.Client, body: Any) -> None:
    response = post(client, INFER, body)

    assert response.status_code < 500, response.text


@SETTINGS
@given(body=invocation_bodies())
def test_random_invocation_bodies_never_get_a_5xx(client: httpx.Client, body: Any) -> None:
    response = post(client, "/invocations", body)

    assert response.status_code < 500, response.text


@SETTINGS
@given(raw=st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
def test_random_bytes_never_get_a_5xx(client: httpx.Client, raw: bytes) -> None:
    for path in (INFER, "/invocations"):
        response = client.post(path, content=raw, headers={"content-type": "application/json"})
        assert response.status_code < 500, response.text
