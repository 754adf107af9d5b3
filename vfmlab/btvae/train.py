"""The epoch loop both stages share: AdamW, seeded shuffles, progress, atomic checkpoints, resume.

Every epoch's shuffle and noise come from ``(seed, epoch)``, so a run resumed from a checkpoint
draws the same batches it would have drawn without the interruption.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch
from torch import nn

from vfmlab.atomic import save_torch
from vfmlab.errors import VfmlabError
from vfmlab.progress import Reporting, SilentReporter

from .checkpoint import CHECKPOINT_FILE, MODEL_FORMAT
from .losses import LossParts


class StageSettings(Protocol):
    """What the loop needs of a stage config (:class:`PretrainConfig` and :class:`FinetuneConfig` have it)."""

    epochs: int
    lr: float
    weight_decay: float
    batch_size: int


@dataclass
class RunContext:
    """State shared by the stages of one run: where to checkpoint, how far along, what to report."""

    run_dir: Path
    identity: dict[str, Any]  # model name, config, label, sources: stored with every checkpoint
    seed: int
    total_epochs: int
    reporter: Reporting = field(default_factory=SilentReporter)
    checkpoint_every: int = 1
    epochs_done: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    resume_state: dict[str, Any] | None = None  # checkpoint being resumed, until its stage takes it

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT_FILE

    def save_checkpoint(self, stage: str, epoch: int, module: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        save_torch(
            {
                "format": MODEL_FORMAT,
                "identity": self.identity,
                "stage": stage,
                "epoch": epoch,
                "state": module.state_dict(),
                "optimizer": optimizer.state_dict(),
                "history": self.history,
            },
            self.checkpoint_path,
        )


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
    ``ctx.checkpoint_every`` epochs and after the last one.
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
        row = {"stage": stage, "epoch": epoch + 1, **{k: v / len(batches) for k, v in sums.items()}}
        ctx.history.append(row)
        ctx.epochs_done += 1
        # Checkpoint first: an epoch the user saw reported survives a cancel that comes right after.
        if (epoch + 1) % ctx.checkpoint_every == 0 or epoch + 1 == settings.epochs:
            ctx.save_checkpoint(stage, epoch + 1, module, optimizer)
        ctx.reporter.metric(f"{stage}_loss", row["loss"], epoch + 1)
        ctx.reporter.progress(
            ctx.epochs_done / ctx.total_epochs, f"{stage} epoch {epoch + 1}/{settings.epochs}: loss {row['loss']:.4g}"
        )
