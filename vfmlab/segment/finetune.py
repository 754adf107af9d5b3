"""Fine-tune a SAM-family decoder on the user's own segments, image encoder frozen and its features cached.

As in the HQ-SAM medical fine-tuning this follows, only the HQ parts (HQ token, its MLP, the fusion
layers) are trained by default, optionally the whole mask decoder too. Slices of the given segments
are split into training and held-out slices with a fixed seed; each training step prompts with the
reference mask's box, jittered, or with points sampled inside and outside. Validation Dice per
segment is reported next to the un-tuned model's on the same held-out slices, and the checkpoint
with the best mean validation Dice is kept.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..atomic import save_torch, write_json
from ..errors import InputError
from ..jobs import register_task
from ..metrics import dice
from ..volume import Volume
from .config import SegmenterFinetuneConfig
from .propagate import box_of
from .segmenter import ImageEmbedding, Prompt, PromptSegmenter
from .volume_segmenter import VolumeSegmenter


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
                      on_progress: Callable[[float, str], None] | None) -> dict[int, ImageEmbedding]:
    """Frozen-encoder features of the needed slices, kept in ``run_dir`` so a resumed run skips encoding."""
    path = run_dir / "embeddings.pt"
    key = f"{engine.segmenter.name}:{config.axis}:{engine.fingerprint(config.axis)}"
    stored = torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else {}
    if stored.get("key") != key:
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
        if on_progress:
            verb = "cached features of" if cached else "encoding"
            on_progress(0.2 * (count + 1) / len(indices), f"{verb} slice {count + 1}/{len(indices)} (encoder frozen)")
    save_torch(stored, path)
    return embeddings


def finetune(
    volume: Volume,
    labels: np.ndarray,
    config: SegmenterFinetuneConfig,
    run_dir: str | Path,
    resume: bool = False,
    on_epoch: Callable[[dict], None] | None = None,
    on_progress: Callable[[float, str], None] | None = None,
    segmenter: PromptSegmenter | None = None,
) -> dict:
    """Train, validate each epoch, keep ``best.pt`` (model state dict) and ``last.pt`` (for resuming).

    Returns the summary also written to ``run_dir/summary.json``.
    """
    from .registry import build_segmenter

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not config.segments:
        raise InputError("name at least one segment to fine-tune on (name=label value)")
    if config.batch_size < 1:
        raise InputError(f"the batch size must be at least 1, not {config.batch_size}")
    segmenter = segmenter or build_segmenter(config.model, device=config.device)
    engine = VolumeSegmenter(segmenter, volume)
    train, held_out = split_slices(engine.stack(config.axis).view(labels), config)
    embeddings = cached_embeddings(engine, config, sorted({s.index for s in train + held_out}), run_dir, on_progress)
    training = _Training.start(segmenter, config, len(train), run_dir, resume)
    baseline = training.history[0]["baseline_dice"] if training.history else validate(segmenter, embeddings, held_out)
    untuned = float(np.mean(list(baseline.values())))
    best = max((h["mean_val_dice"] for h in training.history), default=untuned)
    if not training.best_path.is_file():
        save_torch(segmenter.model.state_dict(), training.best_path)  # the un-tuned model, until an epoch beats it
    rng = np.random.default_rng(config.seed + training.start_epoch)
    for epoch in range(training.start_epoch, config.epochs):
        began = time.time()
        losses = training.epoch(embeddings, train, rng)
        val = validate(segmenter, embeddings, held_out)
        record = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val_dice": val,
                  "mean_val_dice": float(np.mean(list(val.values()))), "baseline_dice": baseline,
                  "seconds": time.time() - began}
        best = training.keep(record, best)
        if on_epoch:
            on_epoch(record)
        if on_progress:
            on_progress(0.2 + 0.8 * (epoch + 1) / config.epochs, f"epoch {epoch + 1}/{config.epochs}: "
                        f"val Dice {record['mean_val_dice']:.3f} (un-tuned {untuned:.3f})")
    summary = {"config": asdict(config), "train_slices": len(train), "held_out_slices": len(held_out),
               "baseline_dice": baseline, "best_mean_val_dice": best, "improved": best > untuned + 1e-6,
               "epochs_run": len(training.history), "best_checkpoint": str(training.best_path)}
    write_json(run_dir / "summary.json", summary)
    return summary


@dataclass
class _Training:
    """The optimisation state of a fine-tuning run and the files that keep it (``last.pt``, ``best.pt``,
    ``history.json``)."""

    segmenter: PromptSegmenter
    config: SegmenterFinetuneConfig
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    steps_per_epoch: int
    run_dir: Path
    history: list[dict] = field(default_factory=list)
    start_epoch: int = 0

    @property
    def last_path(self) -> Path:
        return self.run_dir / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.run_dir / "best.pt"

    @classmethod
    def start(cls, segmenter: PromptSegmenter, config: SegmenterFinetuneConfig, train_count: int, run_dir: Path,
              resume: bool) -> _Training:
        """A fresh optimiser and schedule, or, with ``resume`` and a ``last.pt``, the stored ones."""
        parameters = trainable_parameters(segmenter, config.train_decoder)
        optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
        steps_per_epoch = -(-train_count // config.batch_size)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, learning_rate_factor(config, steps_per_epoch))
        training = cls(segmenter, config, optimizer, scheduler, steps_per_epoch, run_dir)
        if resume and training.last_path.is_file():
            state = torch.load(training.last_path, map_location="cpu", weights_only=True)
            segmenter.model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            training.start_epoch = int(state["epoch"])
            training.history = json.loads((run_dir / "history.json").read_text())
        return training

    def epoch(self, embeddings: dict, train: list, rng: np.random.Generator) -> list[float]:
        """One pass over ``train`` in mini-batches; returns each prompt's loss. Leaves the model in eval mode."""
        from monai.losses import DiceCELoss

        loss_function = DiceCELoss(sigmoid=True)
        self.segmenter.model.train()
        losses = []
        for batch in np.array_split(rng.permutation(len(train)), self.steps_per_epoch):
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

    def keep(self, record: dict, best: float) -> float:
        """Append the epoch's record, save ``best.pt`` when it beats ``best`` and always ``last.pt``; the new best."""
        self.history.append(record)
        if record["mean_val_dice"] > best:
            best = record["mean_val_dice"]
            save_torch(self.segmenter.model.state_dict(), self.best_path)
        save_torch({"model": self.segmenter.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(), "epoch": record["epoch"]}, self.last_path)
        write_json(self.run_dir / "history.json", self.history)
        return best


@register_task("segment-finetune")
def finetune_task(params: dict, reporter) -> dict:
    """Background job: ``params`` = {volume, labels (files), run_dir, config (SegmenterFinetuneConfig fields), register_as}."""
    from ..volume_io import read_labels, read_volume
    from ..weights import register_user_model

    volume = read_volume(params["volume"])
    labels = read_labels(params["labels"], volume)
    config = SegmenterFinetuneConfig(**params.get("config", {}))

    def report_epoch(record: dict) -> None:
        reporter.metric("train_loss", record["train_loss"], record["epoch"])
        reporter.metric("mean_val_dice", record["mean_val_dice"], record["epoch"])

    summary = finetune(volume, labels, config, params["run_dir"], resume=bool(params.get("resume")),
                       on_epoch=report_epoch, on_progress=reporter.progress)
    reporter.artifact("checkpoint", summary["best_checkpoint"])
    if params.get("register_as"):
        entry = register_user_model(params["register_as"], summary["best_checkpoint"], config.model)
        summary["registered_model"] = entry.name
    return summary
