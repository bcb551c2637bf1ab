"""A served model is moved out of the cyclic garbage collector's reach once it is loaded."""

from __future__ import annotations

import gc

from keelson.registry.model import LoadedModel
from keelson.serve import create_app


def test_loading_a_model_freezes_what_is_alive(model: LoadedModel) -> None:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0

    create_app(model)

    assert gc.get_freeze_count() > 0  # a full collection no longer walks the libraries
    gc.unfreeze()
