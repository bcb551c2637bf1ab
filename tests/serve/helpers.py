"""Request bodies for the served toy model, in every format the server accepts."""

from __future__ import annotations

from typing import Any

from keelson.registry.model import LoadedModel, Prediction
from keelson.registry.signature import V2_DATATYPES

ROWS: list[dict[str, Any]] = [
    {"age": 30, "income": 42.5, "plan": "basic"},
    {"age": 61, "income": None, "plan": "pro"},
    {"age": 45, "income": 70.25, "plan": "plus"},
    {"age": 19, "income": 12.0, "plan": "gold"},  # a category unseen in training
    {"age": 52, "income": 55.0, "plan": None},
]
INFER = "/v2/models/toy/infer"


def columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {name: [row[name] for row in rows] for name in rows[0]}


def in_process(model: LoadedModel, rows: list[dict[str, Any]]) -> Prediction:
    return model.predict(model.signature.frame(columns(rows)))


def v2_body(model: LoadedModel, rows: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """One tensor per column, shape [n, 1] with nested data (the pandas-codec convention)."""
    types = {column.name: V2_DATATYPES[column.type] for column in model.signature.inputs}
    inputs = [
        {
            "name": name,
            "shape": [len(values), 1],
            "datatype": types[name],
            "data": [[v] for v in values],
        }
        for name, values in columns(rows).items()
    ]
    return {"inputs": inputs, **extra}


def invocation_bodies(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    names = list(rows[0])
    return {
        "dataframe_split": {
            "dataframe_split": {
                "columns": names,
                "data": [[row[name] for name in names] for row in rows],
                "index": list(range(len(rows))),
            }
        },
        "dataframe_records": {"dataframe_records": rows},
        "instances": {"instances": rows},
        "inputs_columns": {"inputs": columns(rows)},
        "inputs_records": {"inputs": rows},
    }
