"""A training run's folder, the same for every pillar that trains (DeepDVR, segmenter fine-tuning, BT-VAE).

``RUN_DIR/``
    ``config.json``    everything needed to repeat or resume the run
    ``last.pt``        the latest training state (model, optimiser, epoch): resume continues from it
    ``best.pt``        the best-validated model, where the pillar validates every epoch
    ``metrics.jsonl``  one JSON row per finished epoch, ``step`` counting epochs over the whole run
    ``STOP``           present: stop after the current batch (``vfmlab ... --stop``, the panels' Stop)
    ``summary.json``   the finished run's result
    ``events.jsonl``   the background job's events (:mod:`vfmlab.jobs`), when it ran as a job

plus the pillar's own products (DeepDVR's ``transfer_function.json``, BT-VAE's ``model.pt``).
Checkpoints and JSON are written atomically, so a run cancelled at any moment resumes from its last
whole epoch. :meth:`RunFolder.record_epoch` is where an epoch's metrics reach both the folder and the
reporter (terminal bar or job events), so every pillar reports epochs the same way.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from . import atomic
from .errors import InputError
from .progress import Reporting

CONFIG = "config.json"
LAST = "last.pt"
BEST = "best.pt"
METRICS = "metrics.jsonl"
STOP = "STOP"
SUMMARY = "summary.json"


@dataclass(frozen=True)
class RunFolder:
    """One run folder; ``kind`` names the pillar's runs in messages ("a DeepDVR run folder")."""

    path: Path
    kind: str = "training"
    created_by: str = "vfmlab"

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    def file(self, name: str) -> Path:
        return self.path / name

    # -- config ----------------------------------------------------------------------------------
    def read_config(self) -> dict:
        path = self.file(CONFIG)
        if not path.is_file():
            raise InputError(f"is not a {self.kind} run folder (no {CONFIG}); start one with '{self.created_by}'",
                             self.path)
        return json.loads(path.read_text(encoding="utf-8"))

    def write_config(self, config: dict) -> None:
        atomic.write_json(self.file(CONFIG), config)

    def begin(self, config: dict, resume: bool, same_config: bool = False, products: tuple[str, ...] = ()) -> None:
        """Prepare the folder for a run of ``config``.

        A new run (``resume`` False) removes the previous run's checkpoints, metrics, summary and
        ``products``; a resumed one keeps them. ``same_config``: a resumed run must have the stored
        config (the pillar cannot continue under other settings); otherwise the new config replaces it.
        A pending stop request is kept: the launcher clears it when it starts the run, so a stop asked
        for while the process starts up is not lost.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        if resume and same_config and self.file(CONFIG).is_file() and as_json(self.read_config()) != as_json(config):
            raise InputError("was started with other settings; resume it with the same ones or start a new run",
                             self.path)
        if not resume:
            for name in (LAST, BEST, METRICS, SUMMARY, *products):
                self.file(name).unlink(missing_ok=True)
        self.write_config(config)

    # -- checkpoints -----------------------------------------------------------------------------
    def save_state(self, name: str, state: Any) -> Path:
        return atomic.save_torch(state, self.file(name))

    def load_state(self, name: str, what: str) -> Any:
        """A checkpoint's content; ``what`` names it in errors."""
        if not self.file(name).is_file():
            raise InputError(f"has no {what} ({name}); has the run finished an epoch?", self.path)
        return load_run_file(self.file(name), what)

    # -- metrics ---------------------------------------------------------------------------------
    def metrics(self) -> list[dict]:
        path = self.file(METRICS)
        if not path.is_file():
            return []
        rows = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue  # a run killed mid-write leaves a partial last line
        return rows

    def append_metrics(self, row: dict) -> None:
        with open(self.file(METRICS), "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row, default=float) + "\n")

    def keep_metrics_through(self, step: int) -> None:
        """Drop rows after ``step`` (a resumed run repeats the epochs its checkpoint did not hold)."""
        rows = [row for row in self.metrics() if _step(row) <= step]
        atomic.write_text(self.file(METRICS), "".join(json.dumps(row) + "\n" for row in rows))

    def record_epoch(self, row: dict, reporter: Reporting, fraction: float, message: str,
                     checkpoints: Mapping[str, Any] | None = None) -> None:
        """Record a finished epoch: its ``row`` (it holds ``step``) in ``metrics.jsonl``, then its
        ``checkpoints`` (file name -> state), then its numbers and the run's progress to ``reporter``.

        This order keeps the folder consistent wherever a cancel kills the process: a row without
        its checkpoint is dropped by the resume (:meth:`keep_metrics_through`), and a checkpoint is
        never ahead of the metrics, which would leave a gap in the curve; an epoch the user saw
        reported is saved. Rows of runs in stages carry ``stage``; their numbers are reported as
        ``<stage>_<name>``.
        """
        self.append_metrics(row)
        for name, state in (checkpoints or {}).items():
            self.save_state(name, state)
        prefix = f"{row['stage']}_" if "stage" in row else ""
        for name, value in row.items():
            if name not in ("step", "epoch") and isinstance(value, (int, float)) and math.isfinite(value):
                reporter.metric(prefix + name, value, row["step"])
        reporter.progress(fraction, message)

    # -- stop and summary ------------------------------------------------------------------------
    def request_stop(self) -> None:
        self.file(STOP).write_text("stop requested\n")

    def stop_requested(self) -> bool:
        return self.file(STOP).exists()

    def clear_stop(self) -> None:
        self.file(STOP).unlink(missing_ok=True)

    def write_summary(self, summary: dict) -> None:
        atomic.write_json(self.file(SUMMARY), summary)

    def summary(self) -> dict | None:
        path = self.file(SUMMARY)
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def seconds_to_reach(rows: list[dict], metric: str, target: float) -> float | None:
    """Wall seconds (the rows' ``seconds`` summed) until ``metric`` first reaches ``target``; None if never.

    The number a user feels when comparing schedules: how long until the result is good enough, beside
    how good it is at the end.
    """
    elapsed = 0.0
    for row in rows:
        elapsed += float(row.get("seconds", 0.0))
        if row.get(metric) is not None and row[metric] >= target:
            return elapsed
    return None


def load_run_file(path: Path, what: str) -> Any:
    """A torch file of tensors and plain values (``weights_only``: loading it cannot run code); a missing,
    damaged or foreign file raises :class:`InputError` naming ``what`` it should have been."""
    import torch

    if not path.is_file():
        raise InputError(f"has no {what} ({path.name})", path.parent)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises EOFError, RuntimeError, UnpicklingError... for bad files
        detail = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        if "weights only" in detail.lower():
            # not torch's advice (load with weights_only=False): that would run whatever code the file holds
            detail = "not a file of tensors and plain values, or damaged"
        raise InputError(f"is corrupt or not a {what} ({type(error).__name__}: {detail})", path) from None


def _step(row: dict) -> int:
    # Rows of DeepDVR runs written before the shared layout carry only ``epoch`` (the same count there).
    return int(row.get("step", row.get("epoch", 0)))


def as_json(value: Any) -> Any:
    """JSON form (tuples → lists), so settings read from JSON and built in memory compare equal."""
    return json.loads(json.dumps(value))
