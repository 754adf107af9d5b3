"""The epoch loop both stages share: AdamW, seeded shuffles, progress, atomic checkpoints, resume.

Every epoch's shuffle and noise come from ``(seed, epoch)``, so a run resumed from a checkpoint
draws the same batches it would have drawn without the interruption.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np
import torch
from torch import nn

from vfmlab.errors import VfmlabError
from vfmlab.progress import Reporting, SilentReporter
from vfmlab.runs import LAST, RunFolder

from .checkpoint import MODEL_FORMAT
from .losses import LossParts


class StageSettings(Protocol):
    """What the loop needs of a stage config (:class:`PretrainConfig` and :class:`FinetuneConfig` have it)."""

    epochs: int
    lr: float
    weight_decay: float
    batch_size: int


@dataclass
class RunContext:
    """State shared by the stages of one run: its folder, how far along, what to report."""

    run: RunFolder
    identity: dict[str, Any]  # model name, config, label, sources: stored with every checkpoint
    seed: int
    total_epochs: int
    reporter: Reporting = field(default_factory=SilentReporter)
    checkpoint_every: int = 1
    epochs_done: int = 0  # over both stages: the ``step`` of the run's metric rows
    resume_state: dict[str, Any] | None = None  # checkpoint being resumed, until its stage takes it
    stopped: bool = False  # a stop was requested (``RUN_DIR/STOP``); the stages return at once
    saved_step: int = 0  # the step ``last.pt`` holds: where a stopped or cancelled run resumes

    def __post_init__(self) -> None:
        if self.resume_state is not None:
            self.saved_step = int(self.resume_state["step"])

    def checkpoint(self, stage: str, epoch: int, module: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
        """``last.pt``'s content after ``epoch`` of ``stage`` (file name -> state, for ``record_epoch``)."""
        self.saved_step = self.epochs_done
        return {LAST: {"format": MODEL_FORMAT, "identity": self.identity, "stage": stage, "epoch": epoch,
                       "step": self.epochs_done, "state": module.state_dict(), "optimizer": optimizer.state_dict()}}

    def stop(self) -> None:
        """Stop on request: the epochs after the last checkpoint are dropped, as a resume would drop them."""
        self.stopped = True
        self.run.keep_metrics_through(self.saved_step)


def epoch_batches(n_items: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Shuffled index batches; a trailing batch of one joins the previous one (batch statistics need two)."""
    order = np.random.default_rng([seed, epoch]).permutation(n_items)
    batches = [order[start : start + batch_size] for start in range(0, n_items, batch_size)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        last = batches.pop()
        batches[-1] = np.concatenate([batches[-1], last])
    return batches


def fit(
    stage: str,
    module: nn.Module,
    step: Callable[[np.ndarray], LossParts],
    n_items: int,
    settings: StageSettings,
    ctx: RunContext,
) -> None:
    """Train ``module`` for ``settings.epochs`` epochs of ``step(batch_indices) -> loss``.

    Resumes from ``ctx.resume_state`` when it belongs to this stage; checkpoints every
    ``ctx.checkpoint_every`` epochs and after the last one; returns early, with ``ctx.stopped`` set,
    when a stop is requested (the unfinished epoch is dropped).
    """
    optimizer = torch.optim.AdamW(module.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    start = 0
    state = ctx.resume_state
    if state is not None and state["stage"] == stage:
        module.load_state_dict(state["state"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["epoch"])
        ctx.resume_state = None
        ctx.reporter.log(f"resuming {stage} after epoch {start}")
    ctx.epochs_done += start
    for epoch in range(start, settings.epochs):
        module.train()
        torch.manual_seed(ctx.seed * 100_003 + epoch)
        sums: dict[str, float] = {}
        batches = epoch_batches(n_items, settings.batch_size, ctx.seed, epoch)
        for indices in batches:
            if ctx.run.stop_requested():
                ctx.stop()
                return
            parts = step(indices)
            if not torch.isfinite(parts.total):
                raise VfmlabError(
                    f"{stage} diverged at epoch {epoch + 1}: the loss is {float(parts.total)}; "
                    "lower the learning rate"
                )
            optimizer.zero_grad(set_to_none=True)
            parts.total.backward()
            optimizer.step()
            for name, value in {"loss": parts.total, **parts.parts}.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach())
        ctx.epochs_done += 1
        row = {"step": ctx.epochs_done, "stage": stage, "epoch": epoch + 1,
               **{k: v / len(batches) for k, v in sums.items()}}
        saves = (epoch + 1) % ctx.checkpoint_every == 0 or epoch + 1 == settings.epochs
        ctx.run.record_epoch(row, ctx.reporter, ctx.epochs_done / ctx.total_epochs,
                             f"{stage} epoch {epoch + 1}/{settings.epochs}: loss {row['loss']:.4g}",
                             ctx.checkpoint(stage, epoch + 1, module, optimizer) if saves else None)
