"""The bench's rows in each server's native request format, and the answers' decoding.

- Open Inference v2 with MLServer's pandas-codec convention (keelson, MLServer): one
  tensor per column, shape ``[rows, 1]``, and ``"content_type": "pd"``;
- MLflow's ``dataframe_split`` (MLflow, keelson's ``/invocations``);
- BentoML's typed JSON for ``rows: list[dict]``: ``{"rows": [{column: value}, ...]}``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from serving_peers.base import Rows

V2_DATATYPES = {"int64": "INT64", "float64": "FP64", "string": "BYTES", "bool": "BOOL"}


def v2_body(rows: Rows, output: str) -> dict[str, Any]:
    """A V2 inference request asking for one output (keelson's or MLServer's name for it)."""
    n = len(rows.data)
    inputs = [
        {
            "name": name,
            "shape": [n, 1],
            "datatype": V2_DATATYPES[kind],
            "data": rows.column(position),
        }
        for position, (name, kind) in enumerate(zip(rows.columns, rows.types, strict=True))
    ]
    return {"parameters": {"content_type": "pd"}, "inputs": inputs, "outputs": [{"name": output}]}


def dataframe_split_body(rows: Rows) -> dict[str, Any]:
    return {"dataframe_split": {"columns": rows.columns, "data": rows.data}}


def records_body(rows: Rows) -> dict[str, Any]:
    return {"rows": rows.records()}


def v2_output(answer: Any, name: str) -> np.ndarray:
    """The named output tensor of a V2 answer, in its shape."""
    for output in answer["outputs"]:
        if output["name"] == name:
            return np.asarray(output["data"], dtype=np.float64).reshape(output["shape"])
    names = [output["name"] for output in answer["outputs"]]
    raise ValueError(f"the answer has no output '{name}'; it has {names}")


def matrix(values: Any) -> np.ndarray:
    """A list of per-row probability lists, as a (rows, classes) array."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"expected one list of probabilities per row; got shape {array.shape}")
    return array
