"""A DeepDVR run folder: the shared layout (:mod:`vfmlab.runs`) plus previews and the exported TF."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import InputError
from ..runs import BEST, CONFIG, LAST, METRICS, RunFolder

PREVIEWS = "previews"
TF_JSON = "transfer_function.json"
TF_VP = "learned_tf.vp"
PRODUCTS = (TF_JSON, TF_VP)

__all__ = ["BEST", "CONFIG", "LAST", "METRICS", "PREVIEWS", "TF_JSON", "TF_VP", "dvr_run", "load_checkpoint"]


def dvr_run(path: str | Path) -> RunFolder:
    """The DeepDVR run folder at ``path``."""
    return RunFolder(Path(path), "DeepDVR", "vfmlab dvr-train")


def load_checkpoint(run: RunFolder, name: str = LAST) -> dict[str, Any]:
    """A DeepDVR checkpoint of ``run`` (``last.pt`` or ``best.pt``), checked to hold a model."""
    state = run.load_state(name, "DeepDVR checkpoint")
    if not isinstance(state, dict) or "model_state" not in state or "model" not in state:
        raise InputError("is not a DeepDVR checkpoint (no model state)", run.file(name))
    return state
