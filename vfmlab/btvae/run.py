"""One training run in a folder: data → split → stage 1 → stage 2 → metrics on the held-back slices.

``RUN_DIR`` receives ``config.json`` (everything needed to repeat the run), ``split.json``,
``checkpoint.pt`` while training, and at the end ``model.pt``, ``history.csv`` (loss per epoch)
and ``metrics.json`` (Dice, IoU, precision, recall, false positives on negative slices).
"""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vfmlab.devices import resolve_device
from vfmlab.progress import Reporting, SilentReporter
from vfmlab.errors import InputError
from vfmlab.atomic import save_torch, write_json

from .checkpoint import (
    CHECKPOINT_FILE,
    MODEL_FILE,
    MODEL_FORMAT,
    PRETRAINED_FILE,
    TrainedModel,
    load_file,
    save_trained,
)
from .config import TrainConfig
from .data import SliceSet, Split, load_sources, split_slices
from .inference import predict_slices
from .losses import SegmentationLoss
from .metrics import slice_stack_metrics
from .pretrain import build_pretrainer
from .registry import build_model, get_spec
from .train import RunContext, fit

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
SPLIT_FILE = "split.json"
HISTORY_FILE = "history.csv"
_RUN_FILES = (CHECKPOINT_FILE, MODEL_FILE, METRICS_FILE, SPLIT_FILE, HISTORY_FILE, PRETRAINED_FILE)


def prepare_data(
    sources: list[dict[str, Any]], label: str, config: TrainConfig, slices: SliceSet | None = None
) -> tuple[SliceSet, Split]:
    """Slices of the sources (or ``slices`` already loaded from them) and their split for ``config``."""
    config.validate()
    if slices is None:
        slices = load_sources(sources, str(label), config.data, config.model.image_size)
    return slices, split_slices(slices.positive, config.data)


def _start(run_dir: Path, identity: dict[str, Any], resume: bool) -> dict[str, Any] | None:
    """Prepare the folder; returns the checkpoint to resume from (None: start from scratch)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        for name in _RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)
        write_json(run_dir / CONFIG_FILE, identity)
        return None
    stored = json.loads((run_dir / CONFIG_FILE).read_text(encoding="utf-8")) if (run_dir / CONFIG_FILE).is_file() else None
    if stored is not None and stored != _plain(identity):
        raise InputError("was started with other settings; resume it with the same ones or start a new run", run_dir)
    write_json(run_dir / CONFIG_FILE, identity)
    if not (run_dir / CHECKPOINT_FILE).is_file():
        return None
    return load_file(run_dir / CHECKPOINT_FILE, "training checkpoint")


def _tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(array, dtype=torch.float32, device=device)[:, None]


def _pretrain(model, spec, slices: SliceSet, split: Split, config: TrainConfig, ctx: RunContext, device) -> None:
    pretrainer = build_pretrainer(spec.pretraining, model, config.pretrain).to(device)
    images = _tensor(slices.images[split.training], device)
    fit("pretrain", pretrainer, lambda idx: pretrainer(images[idx]), len(images), config.pretrain, ctx)


def _identity(sources, label, model_name: str, config: TrainConfig, stage: str) -> dict[str, Any]:
    return {"format": MODEL_FORMAT, "stage": stage, "model": model_name, "label": str(label),
            "sources": [dict(s) for s in sources], "config": config.to_dict()}


def pretrain_run(
    run_dir: str | Path, sources: list[dict[str, Any]], label: str, model_name: str, config: TrainConfig,
    *, resume: bool = False, reporter: Reporting | None = None, slices: SliceSet | None = None,
) -> Path:
    """Stage 1 only; writes ``RUN_DIR/pretrained.pt`` (the whole model after stage 1) and returns its path.

    Stage 1 sees every training image (not the held-back test slices) and no mask, so its result
    does not depend on the label ratio: a study pretrains once per model and fine-tunes per ratio.
    """
    run_dir = Path(run_dir)
    spec = get_spec(model_name)
    if spec.pretraining is None or config.pretrain.epochs < 1:
        raise InputError(f"model '{model_name}' has no pretraining stage (or pretrain epochs is 0)")
    identity = _identity(sources, label, model_name, config, "pretrain")
    target = run_dir / PRETRAINED_FILE
    if resume and target.is_file():
        return target
    state = _start(run_dir, identity, resume)
    slices, split = prepare_data(sources, label, config, slices)
    device = resolve_device(config.device)
    torch.manual_seed(config.data.seed)
    model = build_model(model_name, config.model).to(device)
    ctx = RunContext(run_dir, identity, config.data.seed, config.pretrain.epochs, reporter or SilentReporter(),
                     config.checkpoint_every, resume_state=state, history=list(state["history"]) if state else [])
    _pretrain(model, spec, slices, split, config, ctx, device)
    save_torch({"format": MODEL_FORMAT, "identity": identity, "state_dict": model.state_dict()}, target)
    _write_history(run_dir, ctx.history)
    (run_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
    return target


def train_run(
    run_dir: str | Path, sources: list[dict[str, Any]], label: str, model_name: str, config: TrainConfig,
    *, resume: bool = False, pretrained: str | Path | None = None, reporter: Reporting | None = None,
    slices: SliceSet | None = None,
) -> dict[str, Any]:
    """Train ``model_name`` on ``sources`` (see :func:`vfmlab.btvae.data.load_sources`); returns the metrics.

    ``pretrained``: a ``pretrained.pt`` from :func:`pretrain_run` with the same model, data and
    config, used instead of running stage 1 here. ``resume``: continue from the run's checkpoint
    (a finished run returns its metrics). ``slices``: the sources already loaded with this config.
    """
    run_dir = Path(run_dir)
    reporter = reporter or SilentReporter()
    spec = get_spec(model_name)
    identity = _identity(sources, label, model_name, config, "train")
    identity["pretrained"] = None if pretrained is None else str(pretrained)
    if resume and (run_dir / METRICS_FILE).is_file() and (run_dir / MODEL_FILE).is_file():
        return json.loads((run_dir / METRICS_FILE).read_text(encoding="utf-8"))
    started = time.perf_counter()
    state = _start(run_dir, identity, resume)
    slices, split = prepare_data(sources, label, config, slices)
    write_json(run_dir / SPLIT_FILE, {**split.to_dict(), "names": slices.names})
    device = resolve_device(config.device)
    torch.manual_seed(config.data.seed)
    model = build_model(model_name, config.model).to(device)

    run_stage1 = spec.pretraining is not None and config.pretrain.epochs > 0 and pretrained is None
    total = config.finetune.epochs + (config.pretrain.epochs if run_stage1 else 0)
    ctx = RunContext(run_dir, identity, config.data.seed, total, reporter, config.checkpoint_every,
                     resume_state=state, history=list(state["history"]) if state else [])
    if pretrained is not None:
        _load_pretrained(model, Path(pretrained), identity)
    elif run_stage1 and not (state is not None and state["stage"] == "finetune"):
        _pretrain(model, spec, slices, split, config, ctx, device)
    elif run_stage1:
        ctx.epochs_done = config.pretrain.epochs  # stage 1 finished before the checkpoint being resumed

    _finetune_stage(model, model_name, slices, split, config, ctx, device)
    return _finish(run_dir, model, model_name, label, config, slices.subset(split.test), split, ctx, started)


def _finetune_stage(model, model_name: str, slices: SliceSet, split: Split, config: TrainConfig, ctx: RunContext,
                    device) -> None:
    """Stage 2: the segmentation loss on the labelled slices (the whole model trains)."""
    labelled = split.labelled
    images = _tensor(slices.images[labelled], device)
    masks = _tensor(slices.masks[labelled], device)
    loss_fn = SegmentationLoss(config.finetune)

    def step(idx):
        out = model(images[idx], sample=True)
        return loss_fn(out.logits, masks[idx], out.mu, out.logvar)

    ctx.reporter.log(f"{model_name}: {len(split.training)} training slices ({len(labelled)} labelled), "
                     f"{len(split.test)} held back")
    fit("finetune", model, step, len(labelled), config.finetune, ctx)


def _finish(run_dir: Path, model, model_name: str, label: str, config: TrainConfig, test: SliceSet, split: Split,
            ctx: RunContext, started: float) -> dict[str, Any]:
    """Score the held-back slices, write the model, history and metrics, drop the resume checkpoint."""
    device = next(model.parameters()).device
    mean, _ = predict_slices(model, test.images, config.inference_samples if model.probabilistic else 1,
                             device=device)
    metrics = {
        "model": model_name, "ratio": config.data.ratio, "label": str(label),
        "labelled_slices": int(len(split.labelled)), "training_slices": int(len(split.training)),
        **slice_stack_metrics(mean >= 0.5, test.masks),
        "final_loss": ctx.history[-1]["loss"] if ctx.history else None,
        "seconds": time.perf_counter() - started,  # this session's part when resumed
    }
    model.cpu()
    save_trained(run_dir / MODEL_FILE, TrainedModel(model_name, model, config, str(label), metrics))
    _write_history(run_dir, ctx.history)
    write_json(run_dir / METRICS_FILE, metrics)
    (run_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
    for name in ("dice", "iou", "precision", "recall"):
        ctx.reporter.metric(name, metrics[name])
    ctx.reporter.progress(1.0, f"{model_name}: Dice {metrics['dice']:.3f} on {metrics['slices']} held-back slices")
    return metrics


def _plain(value: Any) -> Any:
    """JSON form (tuples → lists), so settings read from JSON and from a checkpoint compare equal."""
    return json.loads(json.dumps(value))


def _load_pretrained(model, path: Path, identity: dict[str, Any]) -> None:
    payload = load_file(path, "pretrained model")
    theirs, mine = _plain(payload["identity"]), _plain(identity)
    for settings in (theirs, mine):
        settings["config"]["data"].pop("ratio")  # stage 1 uses no labels: any ratio may reuse it
    keys = ("model", "label", "sources")
    if [theirs[k] for k in keys] != [mine[k] for k in keys]:
        raise InputError(f"was pretrained for model '{theirs['model']}' on other data or labels", path)
    if [theirs["config"][k] for k in ("model", "data", "pretrain")] != [mine["config"][k] for k in ("model", "data", "pretrain")]:
        raise InputError("was pretrained with other model, data or stage-1 settings", path)
    model.load_state_dict(payload["state_dict"])


def _write_history(run_dir: Path, history: list[dict[str, Any]]) -> None:
    columns = sorted({key for row in history for key in row} - {"stage", "epoch"})
    with open(run_dir / HISTORY_FILE, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["stage", "epoch", *columns])
        for row in history:
            writer.writerow([row["stage"], row["epoch"], *(row.get(c, "") for c in columns)])
