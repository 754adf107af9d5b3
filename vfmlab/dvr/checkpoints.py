"""A training run's folder: config, checkpoints (written atomically), metrics, previews, exports."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import atomic
from ..errors import InputError

CONFIG = "config.json"
LAST = "last.pt"
BEST = "best.pt"
METRICS = "metrics.jsonl"
PREVIEWS = "previews"
STOP = "STOP"
TF_JSON = "transfer_function.json"
TF_VP = "learned_tf.vp"


@dataclass(frozen=True)
class RunDir:
    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def previews(self) -> Path:
        return self.path / PREVIEWS

    def read_config(self) -> dict:
        path = self.file(CONFIG)
        if not path.is_file():
            raise InputError("is not a DeepDVR run folder (no config.json); train one with 'vfmlab dvr-train'",
                             self.path)
        return json.loads(path.read_text())

    def write_config(self, config: dict) -> None:
        atomic.write_json(self.file(CONFIG), config)

    def metrics(self) -> list[dict]:
        path = self.file(METRICS)
        if not path.is_file():
            return []
        rows = []
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue  # a run killed mid-write leaves a partial last line
        return rows

    def append_metrics(self, row: dict) -> None:
        with open(self.file(METRICS), "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")

    def keep_metrics_through(self, epoch: int) -> None:
        """Drop metric rows after ``epoch`` (a resumed run repeats epochs its checkpoint did not hold)."""
        rows = [row for row in self.metrics() if row.get("epoch", 0) <= epoch]
        atomic.write_text(self.file(METRICS), "".join(json.dumps(row) + "\n" for row in rows))

    def request_stop(self) -> None:
        self.file(STOP).write_text("stop requested\n")

    def stop_requested(self) -> bool:
        return self.file(STOP).exists()

    def clear_stop(self) -> None:
        self.file(STOP).unlink(missing_ok=True)


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """``torch.save`` into a temporary file beside ``path``, then rename: never a half-written checkpoint."""
    return atomic.save_torch(state, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise InputError("no checkpoint here; has the run finished an epoch?", path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for truncated or foreign files
        raise InputError(f"is not a readable DeepDVR checkpoint ({type(error).__name__}: {error})", path) from None
    if not isinstance(state, dict) or "model_state" not in state or "model" not in state:
        raise InputError("is not a DeepDVR checkpoint (no model state)", path)
    return state
