"""Fine-tune a SAM-family decoder on the user's own segments, image encoder frozen and its features cached.

As in the HQ-SAM medical fine-tuning this follows, only the HQ parts (HQ token, its MLP, the fusion
layers) are trained by default, optionally the whole mask decoder too. Slices of the given segments
are split into training and held-out slices with a fixed seed; each training step prompts with the
reference mask's box, jittered, or with points sampled inside and outside. Validation Dice per
segment is reported next to the un-tuned model's on the same held-out slices, and the checkpoint
with the best mean validation Dice is kept. The run folder is the shared one (:mod:`vfmlab.runs`),
plus ``embeddings.pt``, the frozen encoder's features of the slices used.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..atomic import save_torch
from ..errors import InputError
from ..metrics import dice
from ..progress import Reporting, SilentReporter
from ..runs import BEST, LAST, METRICS, RunFolder, load_run_file
from ..volume import Volume
from .config import SegmenterFinetuneConfig
from .propagate import box_of
from .segmenter import ImageEmbedding, Prompt, PromptSegmenter
from .volume_segmenter import VolumeSegmenter


LEGACY_HISTORY = "history.json"


@dataclass
class SliceSample:
    segment: str
    index: int
    mask: np.ndarray  # (rows, cols) reference


def split_slices(labels_view: np.ndarray, config: SegmenterFinetuneConfig) -> tuple[list[SliceSample], list[SliceSample]]:
    """Training and held-out slices of every segment (slices where it is present), seeded."""
    rng = np.random.default_rng(config.seed)
    train, held_out = [], []
    for name, value in config.segments.items():
        present = np.flatnonzero((labels_view == value).any(axis=(1, 2)))
        if present.size < 2:
            raise InputError(f"segment '{name}' (label {value}) is on {present.size} {config.axis} slice(s); "
                             "fine-tuning needs at least 2 (one to train, one to validate)")
        if config.max_slices_per_segment and present.size > config.max_slices_per_segment:
            present = present[np.linspace(0, present.size - 1, config.max_slices_per_segment).round().astype(int)]
        order = rng.permutation(present)
        n_val = max(1, int(round(config.validation_fraction * len(order))))
        for position, index in enumerate(order):
            sample = SliceSample(name, int(index), labels_view[index] == value)
            (held_out if position < n_val else train).append(sample)
    return train, held_out


def trainable_parameters(segmenter: PromptSegmenter, train_decoder: bool) -> list[torch.nn.Parameter]:
    from .hq_litemedsam import HQ_PARAMETER_PREFIXES

    chosen = []
    for name, parameter in segmenter.model.named_parameters():
        hq_part = name.startswith(HQ_PARAMETER_PREFIXES)
        parameter.requires_grad = hq_part or (train_decoder and name.startswith("mask_decoder."))
        if parameter.requires_grad:
            chosen.append(parameter)
    if not chosen:
        raise InputError(f"model '{segmenter.name}' has no HQ parts to fine-tune; use hq_litemedsam or an HQ-SAM model, "
                         "or train the whole decoder")
    return chosen


def training_prompt(mask: np.ndarray, rng: np.random.Generator, config: SegmenterFinetuneConfig) -> Prompt:
    """A jittered box around the reference, or a few points inside and outside it."""
    if rng.random() < config.point_prompt_probability:
        inside = np.argwhere(mask)
        outside = np.argwhere(~mask)
        chosen = [inside[rng.integers(len(inside))] for _ in range(2)] + [outside[rng.integers(len(outside))]]
        return Prompt(points=[[c, r] for r, c in chosen], point_labels=[1, 1, 0])
    x0, y0, x1, y1 = box_of(mask)
    width, height = x1 - x0 + 1, y1 - y0 + 1
    shift = rng.uniform(-config.box_jitter, config.box_jitter, 4) * np.array([width, height, width, height])
    rows, cols = mask.shape
    box = np.clip(np.array([x0, y0, x1, y1]) + shift, 0, [cols - 1, rows - 1, cols - 1, rows - 1])
    return Prompt(box=(min(box[0], box[2]), min(box[1], box[3]), max(box[0], box[2]), max(box[1], box[3])))


def learning_rate_factor(config: SegmenterFinetuneConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """Multiplier of the learning rate after ``step`` optimiser steps (constant, or cosine to 0).

    Not ``CosineAnnealingLR``: its saved state keeps the old length and it climbs again past it, so a
    run resumed with more epochs would not decay to 0 at its new end.
    """
    total = max(1, config.epochs * steps_per_epoch)
    if not config.cosine_schedule:
        return lambda step: 1.0
    return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))


def prompt_loss(segmenter: PromptSegmenter, embedding: ImageEmbedding, mask: np.ndarray, prompt: Prompt,
                loss_function: Callable) -> torch.Tensor:
    """The loss of one prompted slice against its reference ``mask`` (rows, cols); differentiable."""
    low_res, _ = segmenter.decode(embedding, prompt, multimask=False)
    logits = segmenter.upscale(low_res, embedding)
    target = torch.as_tensor(mask, dtype=torch.float32, device=logits.device)[None, None]
    return loss_function(logits, target)


def validate(segmenter: PromptSegmenter, embeddings: dict, samples: list[SliceSample]) -> dict[str, float]:
    """Mean Dice per segment on held-out slices, prompted with the reference box."""
    scores: dict[str, list[float]] = {}
    for sample in samples:
        prediction = segmenter.predict(embeddings[sample.index], Prompt(box=box_of(sample.mask)))
        scores.setdefault(sample.segment, []).append(dice(prediction.mask, sample.mask))
    return {name: float(np.mean(values)) for name, values in scores.items()}


def cached_embeddings(engine: VolumeSegmenter, config: SegmenterFinetuneConfig, indices: list[int], run_dir: Path,
                      reporter: Reporting) -> dict[int, ImageEmbedding]:
    """Frozen-encoder features of the needed slices, kept in ``run_dir`` so a resumed run skips encoding."""
    path = run_dir / "embeddings.pt"
    key = f"{engine.segmenter.name}:{config.axis}:{engine.fingerprint(config.axis)}"
    try:
        stored = load_run_file(path, "feature cache") if path.is_file() else {}
    except InputError:
        stored = {}  # a damaged cache is rebuilt
    if not isinstance(stored, dict) or stored.get("key") != key:
        stored = {"key": key, "slices": {}}
    embeddings = {}
    for count, index in enumerate(indices):
        cached = index in stored["slices"]
        if cached:
            item = stored["slices"][index]
            embeddings[index] = ImageEmbedding(item["features"].to(engine.segmenter.device),
                                               [t.to(engine.segmenter.device) for t in item["early"]] or None,
                                               tuple(item["original_size"]), tuple(item["input_size"]))
        else:
            embeddings[index] = embedding = engine.embedding(config.axis, index)
            stored["slices"][index] = {"features": embedding.features.cpu(), "early": [t.cpu() for t in
                                       embedding.early_features or []], "original_size": list(embedding.original_size),
                                       "input_size": list(embedding.input_size)}
        verb = "cached features of" if cached else "encoding"
        reporter.progress(0.2 * (count + 1) / len(indices), f"{verb} slice {count + 1}/{len(indices)} (encoder frozen)")
    save_torch(stored, path)
    return embeddings


def finetune(
    volume: Volume,
    labels: np.ndarray,
    config: SegmenterFinetuneConfig,
    run_dir: str | Path,
    resume: bool = False,
    reporter: Reporting | None = None,
    segmenter: PromptSegmenter | None = None,
) -> dict:
    """Train, validate each epoch, keep ``best.pt`` (model state dict) and ``last.pt`` (for resuming) in the
    run folder (:mod:`vfmlab.runs`); stops after the current batch when ``RUN_DIR/STOP`` appears.

    Returns the summary also written to ``run_dir/summary.json``.
    """
    from .registry import build_segmenter

    if not config.segments:
        raise InputError("name at least one segment to fine-tune on (name=label value)")
    if config.batch_size < 1:
        raise InputError(f"the batch size must be at least 1, not {config.batch_size}")
    reporter = reporter or SilentReporter()
    run = finetune_run(run_dir)
    segmenter = segmenter or build_segmenter(config.model, device=config.device)
    engine = VolumeSegmenter(segmenter, volume)
    train, held_out = split_slices(engine.stack(config.axis).view(labels), config)
    if resume:
        _convert_legacy_history(run)
    run.begin(asdict(config), resume)
    embeddings = cached_embeddings(engine, config, sorted({s.index for s in train + held_out}), run.path, reporter)
    baseline = validate(segmenter, embeddings, held_out)  # before a resumed run loads its tuned weights
    untuned = float(np.mean(list(baseline.values())))
    training = _Training.start(segmenter, config, len(train), run, resume)
    best = max((h["mean_val_dice"] for h in run.metrics()), default=untuned)
    if not run.file(BEST).is_file():
        run.save_state(BEST, segmenter.model.state_dict())  # the un-tuned model, until an epoch beats it
    rng = np.random.default_rng(config.seed + training.start_epoch)
    stopped = False
    for epoch in range(training.start_epoch + 1, config.epochs + 1):
        began = time.time()
        losses = training.epoch(embeddings, train, rng, run.stop_requested)
        if losses is None:
            stopped = True
            break
        val = validate(segmenter, embeddings, held_out)
        record = {"step": epoch, "epoch": epoch, "train_loss": float(np.mean(losses)), "val_dice": val,
                  "mean_val_dice": float(np.mean(list(val.values()))), "baseline_dice": baseline,
                  "seconds": time.time() - began}
        checkpoints = training.checkpoints(record["epoch"], improved=record["mean_val_dice"] > best)
        best = max(best, record["mean_val_dice"])
        run.record_epoch(record, reporter, 0.2 + 0.8 * epoch / config.epochs, f"epoch {epoch}/{config.epochs}: "
                         f"val Dice {record['mean_val_dice']:.3f} (un-tuned {untuned:.3f})", checkpoints)
    summary = {"config": asdict(config), "train_slices": len(train), "held_out_slices": len(held_out),
               "baseline_dice": baseline, "best_mean_val_dice": best, "improved": best > untuned + 1e-6,
               "epochs_run": len(run.metrics()), "stopped": stopped, "best_checkpoint": str(run.file(BEST))}
    run.write_summary(summary)
    return summary


def finetune_run(path: str | Path) -> RunFolder:
    """The fine-tuning run folder at ``path``."""
    return RunFolder(Path(path), "segmenter fine-tuning", "vfmlab segment-finetune")


def _convert_legacy_history(run: RunFolder) -> None:
    """Runs written before the shared run layout kept their epochs in ``history.json``: carry them over to
    ``metrics.jsonl`` (the old file stays), so such a run resumes."""
    legacy = run.file(LEGACY_HISTORY)
    if legacy.is_file() and not run.file(METRICS).is_file():
        for row in json.loads(legacy.read_text(encoding="utf-8")):
            run.append_metrics({"step": row["epoch"], **row})


@dataclass
class _Training:
    """The optimisation state of a fine-tuning run; :meth:`keep` writes it to the run's ``last.pt``/``best.pt``."""

    segmenter: PromptSegmenter
    config: SegmenterFinetuneConfig
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    steps_per_epoch: int
    run: RunFolder
    start_epoch: int = 0

    @classmethod
    def start(cls, segmenter: PromptSegmenter, config: SegmenterFinetuneConfig, train_count: int, run: RunFolder,
              resume: bool) -> _Training:
        """A fresh optimiser and schedule, or, with ``resume`` and a ``last.pt``, the stored ones."""
        parameters = trainable_parameters(segmenter, config.train_decoder)
        optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
        steps_per_epoch = -(-train_count // config.batch_size)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, learning_rate_factor(config, steps_per_epoch))
        training = cls(segmenter, config, optimizer, scheduler, steps_per_epoch, run)
        if resume and run.file(LAST).is_file():
            state = run.load_state(LAST, "fine-tuning checkpoint")
            segmenter.model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            training.start_epoch = int(state["epoch"])
        run.keep_metrics_through(training.start_epoch)
        return training

    def epoch(self, embeddings: dict, train: list, rng: np.random.Generator,
              should_stop: Callable[[], bool]) -> list[float] | None:
        """One pass over ``train`` in mini-batches; each prompt's loss, or None when stopped (the epoch is
        dropped). Leaves the model in eval mode."""
        from monai.losses import DiceCELoss

        loss_function = DiceCELoss(sigmoid=True)
        self.segmenter.model.train()
        losses: list[float] | None = []
        for batch in np.array_split(rng.permutation(len(train)), self.steps_per_epoch):
            if should_stop():
                losses = None
                break
            self.optimizer.zero_grad()
            # slices differ in size, so the batch is accumulated prompt by prompt
            for sample in [train[position] for position in batch]:
                loss = prompt_loss(self.segmenter, embeddings[sample.index], sample.mask,
                                   training_prompt(sample.mask, rng, self.config), loss_function)
                (loss / len(batch)).backward()
                losses.append(loss.item())
            self.optimizer.step()
            self.scheduler.step()
        self.segmenter.model.eval()
        return losses

    def checkpoints(self, epoch: int, improved: bool) -> dict:
        """The files an epoch saves: ``last.pt`` (to resume) and, when it ``improved``, ``best.pt``."""
        model_state = self.segmenter.model.state_dict()
        last = {"model": model_state, "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "epoch": epoch}
        return {BEST: model_state, LAST: last} if improved else {LAST: last}
