"""BT-VAE model files: the trained model (``model.pt``), the stage-1 model (``pretrained.pt``), the format
their payloads and the run's ``last.pt`` carry.

Everything is written to a temporary file beside the target and renamed into place, so a job
killed mid-write leaves the previous checkpoint intact. Files are read with ``weights_only=True``:
they hold tensors and plain JSON-like values only, so loading one cannot run code.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from vfmlab.atomic import save_torch
from vfmlab.errors import InputError
from vfmlab.runs import load_run_file

from .config import TrainConfig
from .run_folder import MODEL_FILE
from .registry import build_model, get_spec

MODEL_FORMAT = "vfmlab-btvae/1"


def load_file(path: Path, what: str) -> dict[str, Any]:
    """Load a BT-VAE file or raise :class:`InputError` saying what it should have been."""
    payload = load_run_file(path, what)
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
