"""Run files: atomic training checkpoints (resume after cancel or crash) and the trained model file.

Everything is written to a temporary file beside the target and renamed into place, so a job
killed mid-write leaves the previous checkpoint intact. Files are read with ``weights_only=True``:
they hold tensors and plain JSON-like values only, so loading one cannot run code.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vfmlab.atomic import save_torch
from vfmlab.errors import InputError

from .config import TrainConfig
from .registry import build_model, get_spec

CHECKPOINT_FILE = "checkpoint.pt"
MODEL_FILE = "model.pt"
PRETRAINED_FILE = "pretrained.pt"
MODEL_FORMAT = "vfmlab-btvae/1"


def load_file(path: Path, what: str) -> dict[str, Any]:
    """Load a run file or raise :class:`InputError` saying what it should have been."""
    if not path.is_file():
        raise InputError(f"has no {what} ({path.name})", path.parent)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises EOFError, RuntimeError, UnpicklingError... for bad files
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise InputError(f"is corrupt or not a {what} ({type(exc).__name__}: {detail})", path) from None
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise InputError(f"is not a {what} written by vfmlab btvae", path)
    return payload


@dataclass
class TrainedModel:
    """A trained segmenter with what inference needs to prepare inputs like its training data."""

    name: str
    model: nn.Module
    config: TrainConfig
    label: str
    metrics: dict[str, Any]

    @property
    def probabilistic(self) -> bool:
        return bool(self.model.probabilistic)


def save_trained(path: Path, trained: TrainedModel) -> Path:
    return save_torch(
        {
            "format": MODEL_FORMAT,
            "model_name": trained.name,
            "config": trained.config.to_dict(),
            "label": trained.label,
            "metrics": trained.metrics,
            "state_dict": trained.model.state_dict(),
        },
        path,
    )


def load_trained(run_dir: str | Path) -> TrainedModel:
    """The model of a finished run (``RUN_DIR/model.pt``) on the CPU, in eval mode."""
    path = Path(run_dir) / MODEL_FILE
    payload = load_file(path, "trained BT-VAE/U-Net model")
    config = TrainConfig.from_dict(payload["config"])
    get_spec(payload["model_name"])
    model = build_model(payload["model_name"], config.model)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise InputError(f"weights do not fit a '{payload['model_name']}' model of its config ({exc})", path) from None
    model.eval()
    return TrainedModel(payload["model_name"], model, config, str(payload["label"]), dict(payload["metrics"]))
