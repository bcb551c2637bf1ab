"""Compiled tree ensembles: the model's LightGBM, XGBoost and scikit-learn forests answered
by ONNX Runtime, used only where they match the pipeline (and its ordinal-encoding
preprocessing as Polars expressions: :mod:`keelson.serve.compiled_columns`).

The preprocessing, calibration and blending around an ensemble stay as they are; each
ensemble inside the fitted pipeline is converted to ONNX (onnxmltools, skl2onnx) and
checked against the original on probe rows built from its own split points (both sides
of every split, zeros; missing values apart), then the whole model on placeholder rows. An
ensemble whose outputs differ by more than :data:`TOLERANCE` (ONNX trees compare in
float32), or that fails to convert, is served as it was; the reason is logged. (A value
within one float32 step of a split point can still take the other branch: the probes
cannot rule that out, real data next to never holds such a value.)
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from keelson.registry.model import LoadedModel, Runtime
from keelson.serve.compiled_columns import compile_columns
from keelson.serve.parts import replace_parts

logger = logging.getLogger(__name__)

TOLERANCE = 1e-6  # largest difference allowed: absolute for probabilities, relative for values
PROBE_ROWS = 2048
RUNTIME: Runtime = "onnxruntime"
_CONVERTED = {
    "LGBMClassifier": "lightgbm",
    "LGBMRegressor": "lightgbm",
    "XGBClassifier": "xgboost",
    "XGBRegressor": "xgboost",
    "RandomForestClassifier": "sklearn",
    "RandomForestRegressor": "sklearn",
    "ExtraTreesClassifier": "sklearn",
    "ExtraTreesRegressor": "sklearn",
}  # HistGradientBoosting: skl2onnx 1.20 cannot build its nodes
_TREE_OPS = frozenset({"TreeEnsembleClassifier", "TreeEnsembleRegressor"})


class CompiledTrees(BaseEstimator):
    """A fitted ensemble's ``predict_proba`` / ``predict``, run by ONNX Runtime on one thread.

    Until :attr:`missing_exact` is set, a batch holding a missing value goes to the
    original (converters may send NaN down another branch than the library does)."""

    def __init__(self, original: Any, onnx_model: bytes) -> None:
        self.original = original
        self.missing_exact = False
        self.source = type(original).__name__
        self.n_features_in_: int = original.n_features_in_
        classes = getattr(original, "classes_", None)
        self.classes_ = None if classes is None else np.asarray(classes)
        self.onnx_model = onnx_model
        self._start()

    def _start(self) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # the converters' fixed label shape warns on every run
        self._session = ort.InferenceSession(
            self.onnx_model, options, providers=["CPUExecutionProvider"]
        )
        outputs = self._session.get_outputs()
        self._input = self._session.get_inputs()[0].name
        self._output = outputs[-1 if self.classes_ is not None else 0].name  # probabilities

    def __repr__(self, N_CHAR_MAX: int = 700) -> str:  # noqa: N803
        return f"CompiledTrees({self.source}, onnxruntime)"

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_session"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._start()

    def __sklearn_is_fitted__(self) -> bool:
        return True

    def fit(self, X: Any, y: Any) -> CompiledTrees:  # noqa: N803
        raise TypeError("a compiled ensemble is not refitted: fit the original pipeline")

    def predict_proba(self, X: Any, **_: Any) -> np.ndarray:  # noqa: N803
        return self._run(X)

    def predict(self, X: Any, **_: Any) -> np.ndarray:  # noqa: N803
        output = self._run(X)
        if self.classes_ is None:
            return output.reshape(-1)
        return self.classes_[np.argmax(output, axis=1)]

    def _run(self, X: Any) -> np.ndarray:  # noqa: N803
        values = np.ascontiguousarray(X, dtype=np.float32)
        if not self.missing_exact and np.isnan(values).any():
            return self._original(X)
        return self.runtime(values)

    def runtime(self, X: Any) -> np.ndarray:  # noqa: N803
        """ONNX Runtime's answer (probabilities, or values as one column), missing or not."""
        values = np.ascontiguousarray(X, dtype=np.float32)
        answer = self._session.run([self._output], {self._input: values})[0]
        return np.asarray(answer, dtype=np.float64)

    def _original(self, X: Any) -> np.ndarray:  # noqa: N803
        if self.classes_ is None:
            return np.asarray(self.original.predict(X), dtype=np.float64).reshape(-1, 1)
        return np.asarray(self.original.predict_proba(X), dtype=np.float64)


@dataclass
class Compilation:
    """What :func:`compile_model` did: the model to serve, and per ensemble what happened."""

    model: LoadedModel
    compiled: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # "LGBMClassifier: why"
    max_difference: float = 0.0

    def summary(self) -> str:
        done = f"compiled {', '.join(self.compiled)}" if self.compiled else "nothing compiled"
        kept = f"; kept {'; '.join(self.kept)}" if self.kept else ""
        return f"{done} (largest difference {self.max_difference:.1e}){kept}"


def compile_model(model: LoadedModel, placeholder: Any = None) -> Compilation:
    """``model`` with each convertible ensemble answered by ONNX Runtime where it matches;
    ``placeholder`` (a frame in the signature) checks the whole model once more."""
    result = Compilation(model)
    schema = placeholder.schema if placeholder is not None else None
    compile_part = lambda part: _compiled(part, result, schema)  # noqa: E731
    pipeline = compile_part(copy.deepcopy(model.pipeline))
    replace_parts(pipeline, compile_part)
    if not result.compiled:
        return result
    trees = any(name in _CONVERTED for name in result.compiled)
    compiled = dataclasses.replace(
        model, pipeline=pipeline, runtime=RUNTIME if trees else model.runtime
    )
    if placeholder is not None:
        difference = _difference(model, compiled, placeholder)
        if difference is None or difference > TOLERANCE:
            result.kept.append(f"the whole model differs on placeholder rows ({difference})")
            result.compiled.clear()
            return result
        result.max_difference = max(result.max_difference, difference)
    result.model = compiled
    return result


def _compiled(part: Any, result: Compilation, schema: Any) -> Any:
    """``part`` compiled if it is a convertible ensemble (or, given the input ``schema``,
    ColumnTransformer) that matches, else ``part``."""
    name = type(part).__name__
    if name == "ColumnTransformer" and schema is not None:
        try:
            compiled_columns = compile_columns(part, schema)
        except Exception as exc:
            result.kept.append(f"{name}: {str(exc)[:160]}")
            return part
        result.compiled.append(name)
        return compiled_columns
    if name not in _CONVERTED:
        return part
    try:
        onnx_model = _to_onnx(part)
        compiled = CompiledTrees(part, onnx_model.SerializeToString())
        probes = probe_rows(onnx_model, part)
        difference = _largest_difference(part, compiled, probes)
        missing = _largest_difference(part, compiled, _missing_probes(probes))
        compiled.missing_exact = missing <= TOLERANCE
    except Exception as exc:  # a converter's refusal: serve the ensemble as it is
        result.kept.append(f"{name}: {type(exc).__name__}: {str(exc)[:160]}")
        return part
    if difference > TOLERANCE:
        result.kept.append(f"{name}: outputs differ by {difference:.1e} on probe rows")
        return part
    result.compiled.append(name)
    result.max_difference = max(result.max_difference, difference)
    return compiled


def _to_onnx(estimator: Any) -> Any:
    features = estimator.n_features_in_
    library = _CONVERTED[type(estimator).__name__]
    if library in ("lightgbm", "xgboost"):
        from onnxmltools import convert_lightgbm, convert_xgboost
        from onnxmltools.convert.common.data_types import FloatTensorType as MlFloats

        tensor = [("X", MlFloats([None, features]))]
        if library == "xgboost":  # its converter never adds a ZipMap
            return convert_xgboost(estimator, initial_types=tensor, target_opset=15)
        return convert_lightgbm(estimator, initial_types=tensor, zipmap=False, target_opset=15)
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    inputs = [("X", FloatTensorType([None, features]))]

    options = {id(estimator): {"zipmap": False}} if hasattr(estimator, "classes_") else None
    opsets = {"": 15, "ai.onnx.ml": 3}
    return convert_sklearn(estimator, initial_types=inputs, options=options, target_opset=opsets)


def probe_rows(onnx_model: Any, estimator: Any, rows: int = PROBE_ROWS) -> np.ndarray:
    """Rows that take every split both ways: per feature, values between consecutive
    split points, beyond the extremes, the points of equality splits, and zero."""
    features = estimator.n_features_in_
    splits: list[set[float]] = [set() for _ in range(features)]
    equal: list[set[float]] = [set() for _ in range(features)]
    for feature, value, mode in _split_points(onnx_model):
        (equal if mode == "BRANCH_EQ" else splits)[feature].add(value)
    generator = np.random.default_rng(0)
    columns = [
        generator.choice(_candidates(sorted(splits[f]), equal[f]), size=rows)
        for f in range(features)
    ]
    return np.column_stack(columns)


def _candidates(points: list[float], equal: set[float]) -> np.ndarray:
    values = np.asarray(points, dtype=np.float64)
    between = (values[1:] + values[:-1]) / 2 if len(values) > 1 else np.empty(0)
    ends = [values[0] - 1.0, values[-1] + 1.0] if len(values) else [1.0, -1.0]
    return np.concatenate([between, ends, sorted(equal), [0.0]])


def _missing_probes(rows: np.ndarray) -> np.ndarray:
    """``rows`` with about one value in five missing."""
    missing = rows.copy()
    missing[np.random.default_rng(1).random(rows.shape) < 0.2] = np.nan
    return missing


def _split_points(onnx_model: Any) -> Iterator[tuple[int, float, str]]:
    from onnx import numpy_helper

    for node in onnx_model.graph.node:
        if node.op_type not in _TREE_OPS:
            continue
        attributes = {attribute.name: attribute for attribute in node.attribute}
        features = list(attributes["nodes_featureids"].ints)
        modes = [mode.decode() for mode in attributes["nodes_modes"].strings]
        if "nodes_values" in attributes:
            values = list(attributes["nodes_values"].floats)
        else:
            values = numpy_helper.to_array(attributes["nodes_values_as_tensor"].t).tolist()
        for feature, value, mode in zip(features, values, modes, strict=True):
            if mode != "LEAF":
                yield feature, float(value), mode


def _largest_difference(original: Any, compiled: CompiledTrees, rows: np.ndarray) -> float:
    """The runtime's answers on ``rows`` against the original ensemble's."""
    with warnings.catch_warnings():  # probes are a bare array; the pipeline passes names
        warnings.filterwarnings("ignore", "X does not have valid feature names")
        if compiled.classes_ is not None:
            expected = original.predict_proba(rows)
        else:
            expected = np.reshape(original.predict(rows), (-1, 1))
    return _gap(expected, compiled.runtime(rows), relative=compiled.classes_ is None)


def _difference(original: LoadedModel, compiled: LoadedModel, frame: Any) -> float | None:
    try:
        before, after = original.predict(frame), compiled.predict(frame)
    except Exception:
        logger.warning("the compiled model failed on placeholder rows", exc_info=True)
        return None
    if before.values is not None and after.values is not None:
        return _gap(before.values, after.values, relative=True)
    return _gap(before.probabilities, after.probabilities, relative=False)


def _gap(expected: Any, got: np.ndarray, relative: bool) -> float:
    """Largest difference: absolute for probabilities, relative (to at least 1) for values."""
    expected = np.asarray(expected, dtype=np.float64)
    scale = np.maximum(np.abs(expected), 1.0) if relative else 1.0
    return float(np.max(np.abs(got - expected) / scale))
