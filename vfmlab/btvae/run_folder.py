"""A BT-VAE run folder: the shared layout (:mod:`vfmlab.runs`) plus ``split.json``, the trained ``model.pt``
(a stage-1 run: ``pretrained.pt``) and what older versions wrote. No torch: the panel reads finished runs
with it before any model package is installed."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vfmlab.runs import RunFolder

MODEL_FILE = "model.pt"
PRETRAINED_FILE = "pretrained.pt"
SPLIT_FILE = "split.json"
LEGACY_CHECKPOINT, LEGACY_SUMMARY = "checkpoint.pt", "metrics.json"
LEGACY_FILES = (LEGACY_CHECKPOINT, "history.csv", LEGACY_SUMMARY)
PRODUCTS = (MODEL_FILE, SPLIT_FILE, PRETRAINED_FILE, *LEGACY_FILES)


def btvae_run(path: str | Path) -> RunFolder:
    """The BT-VAE run folder at ``path``."""
    return RunFolder(Path(path), "BT-VAE", "vfmlab btvae-train")


def finished_summary(run_dir: str | Path) -> dict[str, Any] | None:
    """The held-back metrics of a finished run (``summary.json``, or an older run's ``metrics.json``), or None."""
    run = btvae_run(run_dir)
    if not run.file(MODEL_FILE).is_file():
        return None
    legacy = run.file(LEGACY_SUMMARY)
    return run.summary() or (json.loads(legacy.read_text(encoding="utf-8")) if legacy.is_file() else None)
