"""One training run in a folder: data → split → stage 1 → stage 2 → metrics on the held-back slices.

``RUN_DIR`` is the shared run folder (:mod:`vfmlab.runs`): ``config.json`` (everything needed to
repeat the run), ``last.pt`` while training, ``metrics.jsonl`` (losses per epoch of both stages),
``summary.json`` at the end (Dice, IoU, precision, recall, false positives on negative slices), plus
``split.json`` and the trained ``model.pt`` (a stage-1 run: ``pretrained.pt``). Runs written before
that layout (``checkpoint.pt``, ``history.csv``, ``metrics.json``) still resume and load.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vfmlab.devices import resolve_device
from vfmlab.progress import Reporting, SilentReporter
from vfmlab.errors import InputError
from vfmlab.atomic import save_torch, write_json
from vfmlab.runs import LAST, METRICS, RunFolder, as_json

from .checkpoint import MODEL_FORMAT, TrainedModel, load_file, save_trained
from .config import TrainConfig
from .data import SliceSet, Split, load_sources, split_slices
from .inference import predict_slices
from .losses import SegmentationLoss
from .metrics import slice_stack_metrics
from .pretrain import build_pretrainer
from .registry import build_model, get_spec
from .run_folder import (
    LEGACY_CHECKPOINT, MODEL_FILE, PRETRAINED_FILE, PRODUCTS, SPLIT_FILE, btvae_run, finished_summary,
)
from .train import RunContext, fit

def prepare_data(
    sources: list[dict[str, Any]], label: str, config: TrainConfig, slices: SliceSet | None = None
) -> tuple[SliceSet, Split]:
    """Slices of the sources (or ``slices`` already loaded from them) and their split for ``config``."""
    config.validate()
    if slices is None:
        slices = load_sources(sources, str(label), config.data, config.model.image_size)
    priority = slices.labelling_order() if config.data.label_choice == "key" else None
    return slices, split_slices(slices.positive, config.data, priority)


def _start(run: RunFolder, identity: dict[str, Any], resume: bool) -> dict[str, Any] | None:
    """Prepare the folder; returns the checkpoint to resume from (None: start from scratch)."""
    if resume:
        _convert_legacy_run(run)
    run.begin(identity, resume, same_config=True, products=PRODUCTS)
    if not run.file(LAST).is_file():
        run.keep_metrics_through(0)
        return None
    state = load_file(run.file(LAST), "training checkpoint")
    run.keep_metrics_through(int(state["step"]))
    return state


def _convert_legacy_run(run: RunFolder) -> None:
    """An unfinished run written before the shared layout: its ``checkpoint.pt`` becomes ``last.pt`` and the
    epochs it holds become ``metrics.jsonl`` (rows numbered over both stages, as new runs number them)."""
    legacy = run.file(LEGACY_CHECKPOINT)
    if not legacy.is_file() or run.file(LAST).is_file():
        return
    state = load_file(legacy, "training checkpoint")
    history = state.pop("history", [])
    state["step"] = len(history)
    run.save_state(LAST, state)
    if not run.file(METRICS).is_file():
        for step, row in enumerate(history, start=1):
            run.append_metrics({"step": step, **row})
    legacy.unlink()


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
) -> Path | None:
    """Stage 1 only; writes ``RUN_DIR/pretrained.pt`` (the whole model after stage 1) and returns its path
    (None when stopped by ``RUN_DIR/STOP``).

    Stage 1 sees every training image (not the held-back test slices) and no mask, so its result
    does not depend on the label ratio: a study pretrains once per model and fine-tunes per ratio.
    """
    run = btvae_run(run_dir)
    spec = get_spec(model_name)
    if spec.pretraining is None or config.pretrain.epochs < 1:
        raise InputError(f"model '{model_name}' has no pretraining stage (or pretrain epochs is 0)")
    identity = _identity(sources, label, model_name, config, "pretrain")
    target = run.file(PRETRAINED_FILE)
    if resume and target.is_file():
        return target
    state = _start(run, identity, resume)
    slices, split = prepare_data(sources, label, config, slices)
    device = resolve_device(config.device)
    torch.manual_seed(config.data.seed)
    model = build_model(model_name, config.model).to(device)
    ctx = RunContext(run, identity, config.data.seed, config.pretrain.epochs, reporter or SilentReporter(),
                     config.checkpoint_every, resume_state=state)
    _pretrain(model, spec, slices, split, config, ctx, device)
    if ctx.stopped:
        return None
    save_torch({"format": MODEL_FORMAT, "identity": identity, "state_dict": model.state_dict()}, target)
    run.file(LAST).unlink(missing_ok=True)
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
    A stop request (``RUN_DIR/STOP``) ends the run after the current batch; it then returns
    ``{"stopped": True, "step": S}`` and resumes later from its checkpoint, which holds step ``S``.
    """
    run = btvae_run(run_dir)
    reporter = reporter or SilentReporter()
    spec = get_spec(model_name)
    identity = _identity(sources, label, model_name, config, "train")
    identity["pretrained"] = None if pretrained is None else str(pretrained)
    if resume and (finished := finished_summary(run.path)) is not None:
        return finished
    started = time.perf_counter()
    state = _start(run, identity, resume)
    slices, split = prepare_data(sources, label, config, slices)
    write_json(run.file(SPLIT_FILE), {**split.to_dict(), "names": slices.names})
    device = resolve_device(config.device)
    torch.manual_seed(config.data.seed)
    model = build_model(model_name, config.model).to(device)

    run_stage1 = spec.pretraining is not None and config.pretrain.epochs > 0 and pretrained is None
    total = config.finetune.epochs + (config.pretrain.epochs if run_stage1 else 0)
    ctx = RunContext(run, identity, config.data.seed, total, reporter, config.checkpoint_every, resume_state=state)
    if pretrained is not None:
        _load_pretrained(model, Path(pretrained), identity)
    elif run_stage1 and not (state is not None and state["stage"] == "finetune"):
        _pretrain(model, spec, slices, split, config, ctx, device)
    elif run_stage1:
        ctx.epochs_done = config.pretrain.epochs  # stage 1 finished before the checkpoint being resumed

    if not ctx.stopped:
        _finetune_stage(model, model_name, slices, split, config, ctx, device)
    if ctx.stopped:
        return {"stopped": True, "step": ctx.saved_step, "run_dir": str(run.path)}
    return _finish(run, model, model_name, label, config, slices.subset(split.test), split, ctx, started)


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


def _finish(run: RunFolder, model, model_name: str, label: str, config: TrainConfig, test: SliceSet, split: Split,
            ctx: RunContext, started: float) -> dict[str, Any]:
    """Score the held-back slices, write the model and the summary, drop the resume checkpoint."""
    device = next(model.parameters()).device
    mean, _ = predict_slices(model, test.images, config.inference_samples if model.probabilistic else 1,
                             device=device)
    metrics = {
        "model": model_name, "ratio": config.data.ratio, "label": str(label),
        "labelled_slices": int(len(split.labelled)), "training_slices": int(len(split.training)),
        **slice_stack_metrics(mean >= 0.5, test.masks),
        "final_loss": (run.metrics() or [{}])[-1].get("loss"),
        "seconds": time.perf_counter() - started,  # this session's part when resumed
    }
    model.cpu()
    save_trained(run.file(MODEL_FILE), TrainedModel(model_name, model, config, str(label), metrics))
    run.write_summary(metrics)
    run.file(LAST).unlink(missing_ok=True)
    for name in ("dice", "iou", "precision", "recall"):
        ctx.reporter.metric(name, metrics[name])
    ctx.reporter.progress(1.0, f"{model_name}: Dice {metrics['dice']:.3f} on {metrics['slices']} held-back slices")
    return metrics


def _load_pretrained(model, path: Path, identity: dict[str, Any]) -> None:
    payload = load_file(path, "pretrained model")
    theirs, mine = as_json(payload["identity"]), as_json(identity)
    for settings in (theirs, mine):
        settings["config"]["data"].pop("ratio")  # stage 1 uses no labels: any ratio may reuse it
    keys = ("model", "label", "sources")
    if [theirs[k] for k in keys] != [mine[k] for k in keys]:
        raise InputError(f"was pretrained for model '{theirs['model']}' on other data or labels", path)
    if [theirs["config"][k] for k in ("model", "data", "pretrain")] != [mine["config"][k] for k in ("model", "data", "pretrain")]:
        raise InputError("was pretrained with other model, data or stage-1 settings", path)
    model.load_state_dict(payload["state_dict"])

