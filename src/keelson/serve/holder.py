"""The model a server answers with, following a registry alias without downtime.

A :class:`ModelHolder` holds one loaded version. :meth:`ModelHolder.follow` checks the
alias every few seconds; when it moves, the new version is loaded and warmed in a
thread, then swapped in with one assignment. A request takes the current model once,
at its start, so requests in flight finish on the version they began with.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import polars as pl
from starlette.concurrency import run_in_threadpool

from keelson.registry.model import LoadedModel
from keelson.registry.signature import Signature
from keelson.serve.compiled import compile_model
from keelson.serve.errors import ServeError
from keelson.serve.threads import single_threaded

if TYPE_CHECKING:
    from keelson.store.store import Store, StoreLocation

logger = logging.getLogger(__name__)
WARM_ROWS = 8


class StoreSource:
    """Versions of ``ref`` (NAME@ALIAS, NAME@VERSION or NAME) in a store, opened once."""

    def __init__(self, location: StoreLocation, ref: str) -> None:
        self.location = location
        self.ref = ref
        self._store: Store | None = None

    def version(self) -> int:
        """The version ``ref`` points to now."""
        from keelson.registry import versions

        return versions.resolve(self._opened(), versions.ModelRef.parse(self.ref)).version

    def load(self, version: int) -> LoadedModel:
        from keelson.registry import versions

        name = versions.ModelRef.parse(self.ref).name
        return versions.load(self._opened(), f"{name}@{version}")

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def _opened(self) -> Store:
        from keelson.store.store import open_store

        if self._store is None:
            self._store = open_store(self.location)
        return self._store


class ModelHolder:
    """The current version of one model, swapped atomically when its alias moves."""

    def __init__(self, compiled: bool = False) -> None:
        self.compiled = compiled  # tree ensembles by ONNX Runtime where exact
        self._model: LoadedModel | None = None
        self.on_swap: list[Callable[[LoadedModel], None]] = []

    @property
    def ready(self) -> bool:
        return self._model is not None

    @property
    def model(self) -> LoadedModel:
        """The version new requests use; 503 until the first one is loaded and warmed."""
        if self._model is None:
            raise ServeError(
                503, "not_ready", "the model is still loading; retry in a moment.", retry_after=1
            )
        return self._model

    def set(self, model: LoadedModel) -> None:
        """Compile (if asked) and warm ``model`` (first predictions are slow), then make it
        the current one."""
        if self.compiled:
            model = compiled(model)
        warm(model)
        self._model = model
        for listener in self.on_swap:
            listener(model)

    async def follow(self, source: StoreSource, every_s: float) -> None:
        """Keep following the version ``source`` points to (cancel to stop)."""
        while True:
            await self.check(source)
            await asyncio.sleep(every_s if self.ready else min(every_s, 1.0))

    async def check(self, source: StoreSource) -> None:
        """Swap to the version ``source`` points to if it moved; on failure (the store is
        down, the alias is missing) keep serving what we have."""
        try:
            await self._check(source)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("could not check '%s'; serving the current version", source.ref)
            source.close()  # reopened at the next check

    async def _check(self, source: StoreSource) -> None:
        version = await run_in_threadpool(source.version)
        if self._model is not None and self._model.version == version:
            return
        model = await run_in_threadpool(_loaded, source, version)
        await run_in_threadpool(self.set, model)
        logger.info("now serving '%s' version %s", model.name, model.version)


def _loaded(source: StoreSource, version: int) -> LoadedModel:
    model = source.load(version)
    single_threaded(model.pipeline)
    return model


def compiled(model: LoadedModel) -> LoadedModel:
    """``model`` with its tree ensembles compiled where they match (else as it is)."""
    try:
        compilation = compile_model(model, placeholder_rows(model.signature, WARM_ROWS))
    except Exception:
        logger.exception("could not compile '%s' version %s", model.name, model.version)
        return model
    logger.info("'%s' version %s: %s", model.name, model.version, compilation.summary())
    return compilation.model


def warm(model: LoadedModel) -> None:
    """A few predictions on placeholder rows, so the first request does not pay for
    lazy set-up; a model that cannot score them is still served (and logged)."""
    try:
        model.predict(placeholder_rows(model.signature, WARM_ROWS))
    except Exception:
        logger.warning("warm-up of '%s' version %s failed", model.name, model.version)


def placeholder_rows(signature: Signature, rows: int) -> pl.DataFrame:
    """Rows of zeros, empty strings and False in the signature's types."""
    values = {"int64": 0, "float64": 0.0, "string": "", "bool": False}
    return signature.frame({c.name: [values[c.type]] * rows for c in signature.inputs})
