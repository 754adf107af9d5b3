"""DeepDVR subcommands: ``dvr-train``, ``dvr-stop``, ``dvr-status``, ``dvr-render``, ``dvr-export``."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from ..cli import Command, given_options
from ..errors import InputError
from ..models import names
from .config import StudyConfig, TrainConfig


def _configure_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("captures", type=Path, nargs="?",
                        help="capture folder: view images + cameras.json (not needed with --resume)")
    parser.add_argument("--out", type=Path, required=True, help="run folder (config, checkpoints, metrics, previews)")
    parser.add_argument("--model", choices=names("dvr"), help=f"default {TrainConfig.model}")
    parser.add_argument("--size", choices=("small", "paper"),
                        help=f"layer widths: small (CPU) or the paper's (default: {TrainConfig.size})")
    parser.add_argument("--epochs", type=int, help=f"default {TrainConfig.epochs}")
    parser.add_argument("--batch-size", type=int, help=f"global batch (views per step; default {TrainConfig.batch_size})")
    parser.add_argument("--lr", type=float, help="learning rate (default: lookup 0.1, mlp 0.01, deep 0.003)")
    parser.add_argument("--s-low", type=float, help=f"sampling rate at the first epoch (default {TrainConfig.s_low})")
    parser.add_argument("--s-high", type=float,
                        help="sampling rate at the last epoch (default: the captures' renderer's, else 2.0)")
    parser.add_argument("--fixed-rate", action="store_true", help="no stepsize annealing: always --s-high")
    parser.add_argument("--jitter", action="store_true",
                        help="ray jitter (paper); by default samples sit where Slicer's ray caster put them")
    parser.add_argument("--image-size", type=int, help="training image height in pixels (default: as captured)")
    parser.add_argument("--validation-every", type=int,
                        help=f"every n-th view validates (default {TrainConfig.validation_every})")
    parser.add_argument("--volume", type=Path, help="the volume, if not where cameras.json says (SHA-256 checked)")
    parser.add_argument("--targets", choices=("images", "labels"),
                        help="train on the view images (captured or edited) or on segment colours "
                        f"(labels_NNN.png); default {TrainConfig.targets}")
    parser.add_argument("--seed", type=int, help=f"default {TrainConfig.seed}")
    parser.add_argument("--threads", type=int, help=f"default {TrainConfig.threads}")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--background", action="store_true",
                        help="run as a background job and return; stop it with 'vfmlab dvr-stop RUN_DIR'")
    parser.add_argument("--nproc", type=int, default=1, help="data-parallel processes (torchrun, DDP)")


def _config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The options given on the command line over :class:`TrainConfig`'s defaults."""
    if args.captures is None:
        raise InputError("give the capture folder (or --resume to continue a run)")
    given = given_options(model=args.model, size=args.size, epochs=args.epochs, batch_size=args.batch_size,
                          lr=args.lr, s_low=args.s_low, s_high=args.s_high, image_size=args.image_size,
                          validation_every=args.validation_every, seed=args.seed, threads=args.threads,
                          targets=args.targets, volume=str(args.volume.resolve()) if args.volume else None)
    return TrainConfig(captures=str(args.captures.resolve()), anneal=not args.fixed_rate, jitter=args.jitter, **given)


def _run_train(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from ..progress import TerminalReporter
    from .checkpoints import dvr_run
    from .tasks import start_background
    from .train import train

    run = dvr_run(args.out)
    config = None if args.resume else _config_from_args(args)
    if args.resume:
        run.read_config()  # a clear error when --out is not a run
    if args.background:
        job = start_background(run.path, config, resume=args.resume)
        print(f"DeepDVR training started in the background (pid {job.pid}) in {run.path.resolve()}; "
              f"follow it with 'vfmlab dvr-status {run.path}', stop it with 'vfmlab dvr-stop {run.path}'")
        return 0
    run.path.mkdir(parents=True, exist_ok=True)
    run.clear_stop()
    if args.nproc > 1:
        if config is not None:
            run.write_config(asdict(config))
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
                   "-m", "vfmlab.dvr.train", str(run.path)] + (["--resume"] if args.resume else [])
        return subprocess.call(command)
    reporter = TerminalReporter("dvr-train")
    try:
        result = train(config, run.path, reporter, resume=args.resume)
    except KeyboardInterrupt:
        print(f"stopped; continue with 'vfmlab dvr-train --resume --out {run.path}'", file=sys.stderr)
        return 130
    finally:
        reporter.close()
    print(json.dumps(result))
    return 0


def _configure_stop(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--wait", type=float, default=300.0, help="seconds to wait for the run to stop")


def _run_stop(args: argparse.Namespace) -> int:
    from .checkpoints import dvr_run
    from .tasks import run_status, stop_run

    run = dvr_run(args.run_dir)
    run.read_config()
    state = run_status(run.path)["state"]
    if state != "running":
        print(f"the run in {run.path} is not running ({state})")
        return 0
    status = stop_run(run.path, args.wait)
    if status is None:
        print(f"the run did not stop within {args.wait:.0f} s; it stops after its current batch", file=sys.stderr)
        return 1
    print(f"stopped after epoch {status.get('epoch', 0)}; continue with "
          f"'vfmlab dvr-train --resume --out {run.path}' (add --background to run it in the background)")
    return 0


def _configure_status(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path)


def _run_status(args: argparse.Namespace) -> int:
    from .checkpoints import dvr_run
    from .tasks import run_status

    dvr_run(args.run_dir).read_config()
    print(json.dumps(run_status(args.run_dir)))
    return 0


def _configure_render(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--views", type=Path, help="cameras.json (or its folder) of the views; default: the run's captures")
    parser.add_argument("--orbit", type=int, help="instead of --views: this many views around the volume")
    parser.add_argument("--size", type=int, default=512, help="image height in pixels (width keeps the aspect)")
    parser.add_argument("--sampling-rate", type=float, help="samples per voxel (default: the run's validation rate)")
    parser.add_argument("--volume", type=Path, help="volume to render (default: the captured one)")
    parser.add_argument("--checkpoint", default="best.pt", choices=("best.pt", "last.pt"))
    parser.add_argument("--out", type=Path, help="output folder (default: RUN_DIR/renders)")


def _run_render(args: argparse.Namespace) -> int:
    from ..progress import terminal_counter
    from ..render.poses import Orbit, orbit_records
    from .captures import write_image
    from .inference import TrainedRun, load_views, read_volume_for

    run = TrainedRun.load(args.run_dir, args.checkpoint)
    volume = read_volume_for(run, args.volume)
    if args.orbit:
        views = orbit_records(volume, Orbit(views=args.orbit, elevation=20.0), args.size, args.size)
    else:
        views = load_views(args.views or run.config.captures)
    out = args.out or run.run_dir / "renders"
    out.mkdir(parents=True, exist_ok=True)
    background = run.training_set().capture.background
    with terminal_counter("rendering", len(views), unit="view") as counter:
        for n, view in enumerate(views):
            image = run.render(volume, [view], args.size, args.sampling_rate, background)[0]
            write_image(out / f"view_{n:03d}.png", image)
            counter.advance()
    print(f"{len(views)} views written to {out.resolve()}")
    return 0


def _configure_export(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--volume", type=Path, required=True, help="volume to show with the learned result")
    parser.add_argument("--out", type=Path, required=True, help="scene folder (scene.mrml, volume, .vp, images)")
    parser.add_argument("--size", type=int, help="image height of deep models' rendered views (default: captured)")


def _run_export(args: argparse.Namespace) -> int:
    from .export import export_run

    summary = export_run(args.run_dir, args.volume, args.out, args.size)
    print(json.dumps(summary, indent=1))
    return 0


def _configure_study(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("volume", type=Path)
    parser.add_argument("--segmentation", type=Path, required=True,
                        help="a .seg.nrrd or a label map on the volume's grid: each segment gets its colour")
    parser.add_argument("--models", help=f"comma-separated (default {','.join(StudyConfig.models)}; all: "
                        f"{','.join(names('dvr'))})")
    parser.add_argument("--epochs", type=int, help=f"default {StudyConfig.epochs}")
    parser.add_argument("--views", type=int, help=f"orbit views (default {StudyConfig.views}; every "
                        f"{StudyConfig.validation_every}th is held out)")
    parser.add_argument("--size", type=int, help=f"image size in pixels (default {StudyConfig.size})")
    parser.add_argument("--preset", help=f"intensity preset of the opacity (default {StudyConfig.preset})")
    parser.add_argument("--shift", type=float, help="move the preset along the scalar axis")
    parser.add_argument("--model-size", choices=("small", "paper"), help=f"default {StudyConfig.model_size}")
    parser.add_argument("--out", type=Path, required=True, help="study folder (study.json, study.png, captures/, runs/)")


def _run_study(args: argparse.Namespace) -> int:
    from ..progress import TerminalReporter
    from .study import STUDY_JSON, STUDY_PNG, run_study

    models = tuple(m.strip() for m in args.models.split(",") if m.strip()) if args.models else None
    config = StudyConfig(**given_options(epochs=args.epochs, views=args.views, size=args.size, preset=args.preset,
                                         shift=args.shift, model_size=args.model_size, models=models))
    reporter = TerminalReporter("dvr-study")
    try:
        record = run_study(args.volume, args.segmentation, args.out, config, reporter)
    finally:
        reporter.close()
    for model, numbers in record["models"].items():
        print(f"{model}: held-out SSIM {numbers['val_ssim']:.3f} (last epoch {numbers['last_val_ssim']:.3f}), "
              f"PSNR {numbers['val_psnr']:.1f} dB, {numbers['seconds']:.0f} s, {numbers['parameters']} parameters")
    print(f"table {args.out / STUDY_JSON}, renders side by side {args.out / STUDY_PNG}")
    return 0


COMMANDS: list[Command] = [
    Command("dvr-train", "train a DeepDVR model (lookup TF ... DVRNet) from captured views; background, resume, DDP",
            _configure_train, _run_train),
    Command("dvr-stop", "stop a background DeepDVR training run (its last checkpoint stays; --resume continues)",
            _configure_stop, _run_stop),
    Command("dvr-status", "print a DeepDVR run's state and last epoch metrics as JSON", _configure_status, _run_status),
    Command("dvr-render", "render novel views of a trained DeepDVR run at any size", _configure_render, _run_render),
    Command("dvr-export", "write a Slicer scene with a run's learned TF (or rendered views) on a volume",
            _configure_export, _run_export),
    Command("dvr-study", "train several DeepDVR models on segment-colourised Slicer renders (targets no 1D TF can "
            "express) and compare them on held-out views", _configure_study, _run_study),
]
