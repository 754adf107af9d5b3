"""``vfmlab btvae-train``, ``btvae-predict`` and ``btvae-study`` (nothing heavy imported at module level)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from vfmlab.cli import Command
from vfmlab.errors import InputError

from ..progress import TerminalReporter
from .config import STUDY_RATIOS, DataConfig, TrainConfig
from .registry import DEFAULT_MODEL, MODEL_NAMES
from .run_folder import btvae_run


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=Path,
                        help="volume file, or a folder with images/ and masks/ subfolders (2D images)")
    parser.add_argument("labels", type=Path, nargs="?", help="label map on the volume's grid (not for a folder)")
    parser.add_argument("--label", required=True,
                        help="label value of the segment (e.g. 5 = liver in TotalSegmentator maps); for "
                        "masks/<image>_<organ>_NNN.png folders the organ name")
    parser.add_argument("--more", nargs=2, action="append", default=[], metavar=("VOLUME", "LABELS"),
                        help="another volume and label map to take slices from (repeatable)")
    parser.add_argument("--axis", choices=("axial", "coronal", "sagittal"),
                        help=f"slices are cut perpendicular to this axis (default {DataConfig.axis})")
    parser.add_argument("--preset", default="cpu", choices=("cpu", "paper"),
                        help="cpu: narrow model, 128², 20+40 epochs (default); paper: the paper's model and "
                        "epochs (latent 1024×8×8 at 256², 200+400 epochs; use a GPU)")
    parser.add_argument("--size", type=int, help="square input size in pixels (default 128 cpu, 256 paper)")
    parser.add_argument("--pretrain-epochs", type=int, help="stage 1 epochs (btvae, bt-unet)")
    parser.add_argument("--epochs", type=int, help="stage 2 (fine-tuning) epochs")
    parser.add_argument("--batch-size", type=int, help="batch size of both stages")
    parser.add_argument("--samples", type=int, help="z samples per slice at inference (default 16)")
    parser.add_argument("--seed", type=int, help=f"seed of the split and the training (default {DataConfig.seed})")
    parser.add_argument("--label-choice", choices=("random", "key"),
                        help=f"which training slices are labelled: random, or key slices first (default "
                        f"{DataConfig.label_choice})")
    parser.add_argument("--device", help=f"auto (CUDA when available), cpu, cuda, cuda:1 ... (default {TrainConfig.device})")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint in the output folder")


def _sources(args: argparse.Namespace) -> list[dict[str, str]]:
    if args.source.is_dir() and (args.source / "images").is_dir():
        if args.labels is not None:
            raise InputError("a folder of 2D images carries its masks in masks/; give no LABELS", args.labels)
        sources = [{"folder": str(args.source)}]
    elif args.labels is None:
        raise InputError("needs a label map (LABELS) beside the volume", args.source)
    else:
        sources = [{"volume": str(args.source), "labels": str(args.labels)}]
    return sources + [{"volume": str(volume), "labels": str(labels)} for volume, labels in args.more]


def _config(args: argparse.Namespace, ratio: float | None = None) -> TrainConfig:
    if args.preset == "paper":
        config = TrainConfig.paper()
        config.model.image_size = args.size or config.model.image_size
    else:
        config = TrainConfig.cpu(args.size) if args.size else TrainConfig.cpu()
    if args.pretrain_epochs is not None:
        config.pretrain.epochs = args.pretrain_epochs
    if args.epochs is not None:
        config.finetune.epochs = args.epochs
    if args.batch_size is not None:
        config.pretrain.batch_size = config.finetune.batch_size = args.batch_size
    if args.samples is not None:
        config.inference_samples = args.samples
    given = {"axis": args.axis, "seed": args.seed, "ratio": ratio, "label_choice": args.label_choice}
    for name, value in given.items():
        if value is not None:
            setattr(config.data, name, value)
    config.device = args.device or config.device
    config.validate()
    return config


def _set_threads(args: argparse.Namespace) -> None:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)


def _configure_train(parser: argparse.ArgumentParser) -> None:
    _add_data_arguments(parser)
    parser.add_argument("--ratio", type=float,
                        help=f"fraction of training slices with labels (default {DataConfig.ratio})")
    parser.add_argument("--model", choices=MODEL_NAMES, help=f"default {DEFAULT_MODEL}")
    parser.add_argument("--out", type=Path, required=True, help="run folder (model.pt, summary.json, metrics.jsonl ...)")


def _run_train(args: argparse.Namespace) -> int:
    from .run import train_run

    config = _config(args, args.ratio)
    sources = _sources(args)
    _set_threads(args)
    model = args.model or DEFAULT_MODEL
    btvae_run(args.out).clear_stop()  # a stop asked of an earlier run of this folder is not this run's
    reporter = TerminalReporter(f"btvae-train {model}")
    try:
        metrics = train_run(args.out, sources, args.label, model, config, resume=args.resume, reporter=reporter)
    finally:
        reporter.close()
    print(json.dumps(metrics, indent=2))
    return 0


def _configure_predict(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="folder of a finished btvae-train run")
    parser.add_argument("volume", type=Path, help="volume to segment")
    parser.add_argument("--out", type=Path, required=True, help="segmentation file to write (.seg.nrrd)")
    parser.add_argument("--uncertainty", type=Path, help="also write the per-voxel variance of the z samples (.nrrd)")
    parser.add_argument("--samples", type=int, help="z samples per slice (default: the run's)")
    parser.add_argument("--name", help="segment name (default: '<model> label <value>')")


def _run_predict(args: argparse.Namespace) -> int:
    from vfmlab import mrml

    from .checkpoint import load_trained
    from .inference import predict_volume
    from .scene import add_prediction

    if not args.out.name.endswith(".seg.nrrd"):
        raise InputError("the segmentation is written as a .seg.nrrd file", args.out)
    trained = load_trained(args.run_dir)
    if args.uncertainty is not None and not trained.probabilistic:
        raise InputError(f"model '{trained.name}' is deterministic: it has no uncertainty map (use btvae or vae)")
    scene = mrml.new_scene()
    volume_node = mrml.load_volume_node(scene, args.volume)
    prediction = predict_volume(trained, mrml.volume_from_node(volume_node), args.samples)
    name = args.name or f"{trained.name} label {trained.label}"
    nodes = add_prediction(scene, volume_node, prediction, name, uncertainty=args.uncertainty is not None)
    mrml.save_segmentation_node(nodes.segmentation_node, args.out)
    summary = {"segmentation": str(args.out), "segment": name, "voxels": int(prediction.mask.sum()),
               "samples": prediction.samples}
    if nodes.uncertainty_node is not None:
        mrml.save_volume_node(nodes.uncertainty_node, args.uncertainty)
        summary.update(uncertainty=str(args.uncertainty),
                       mean_variance_in_mask=float(prediction.variance[prediction.mask].mean()))
    print(json.dumps(summary, indent=2))
    return 0


def _configure_study(parser: argparse.ArgumentParser) -> None:
    _add_data_arguments(parser)
    parser.add_argument("--models", nargs="+", choices=MODEL_NAMES, help="models to compare (default all)")
    parser.add_argument("--ratios", nargs="+", type=float,
                        help=f"label ratios (default {' '.join(map(str, STUDY_RATIOS))})")
    parser.add_argument("--out", type=Path, required=True, help="study folder (study.csv, study.json, study.png, runs/)")


def _run_study(args: argparse.Namespace) -> int:
    from .study import PLOT_PNG, TABLE_CSV, run_study

    config = _config(args)
    sources = _sources(args)
    _set_threads(args)
    reporter = TerminalReporter("btvae-study")
    try:
        rows = run_study(args.out, sources, args.label, config, tuple(args.models or MODEL_NAMES),
                         tuple(args.ratios or STUDY_RATIOS),
                         resume=args.resume, reporter=reporter)
    finally:
        reporter.close()
    print((args.out / TABLE_CSV).read_text(encoding="utf-8"), end="")
    print(f"{len(rows)} runs; table {args.out / TABLE_CSV}, plot {args.out / PLOT_PNG}")
    return 0


COMMANDS = [
    Command("btvae-train", "train a BT-VAE (or VAE / U-Net / BT-U-Net) segmenter on few labelled slices; "
            "writes model.pt and summary.json (Dice, IoU, precision, recall on held-back slices)",
            _configure_train, _run_train),
    Command("btvae-predict", "segment a volume with a trained run: .seg.nrrd (Slicer segmentation) and the "
            "per-voxel uncertainty (variance over z samples) as .nrrd", _configure_predict, _run_predict),
    Command("btvae-study", "label-ratio study: every model at label ratios 0.9, 0.7, 0.5, 0.3 and 0.1; table "
            "(CSV, JSON) and Dice plot (PNG)", _configure_study, _run_study),
]
