"""``vfmlab probe`` (attention maps and per-head numbers of captures) and ``vfmlab three-balls``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cli import Command, given_options
from ..errors import InputError
from ..models import names
from ..progress import terminal_progress
from .config import ProbeConfig, ThreeBallsConfig

DEFAULT_MODELS = ",".join(names("probe"))


def _weights_files(pairs: list[str]) -> dict[str, Path]:
    """``["dino_vits16=/path.pth"]`` → ``{"dino_vits16": Path(...)}``."""
    files = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise InputError(f"--weights takes MODEL=FILE, got '{pair}'")
        files[name.strip()] = Path(path).expanduser()
    return files


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", default=DEFAULT_MODELS,
                        help=f"comma-separated probes (default {DEFAULT_MODELS}); missing weights are skipped")
    parser.add_argument("--weights", action="append", default=[], metavar="MODEL=FILE",
                        help="use this checkpoint file for MODEL instead of the weights folder (repeatable)")


def configure_probe(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=Path, help="capture folder from 'vfmlab render' (or any PNGs), or one PNG")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    _add_model_options(parser)
    parser.add_argument("--input-size", type=int, help="DINO/CLIP input size (default: the capture's size)")
    parser.add_argument("--keep", type=float,
                        help=f"DINO threshold mode: kept attention mass (default {ProbeConfig.keep})")


def run_probe(args: argparse.Namespace) -> int:
    from .registry import parse_models
    from .run import probe_captures

    models = parse_models(args.models)
    with terminal_progress() as progress:
        summary = probe_captures(args.source, models, args.out, weights_files=_weights_files(args.weights),
                                 progress=progress, **given_options(input_size=args.input_size, keep=args.keep))
    for model, reason in summary["skipped"].items():
        print(f"skipped {model}: {reason}", file=sys.stderr)
    print(f"probed {len(summary['captures'])} captures with {', '.join(summary['models']) or 'no model'}; "
          f"open {(args.out / 'index.html').resolve()}")
    return 0 if summary["models"] else 1


def configure_three_balls(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    _add_model_options(parser)
    parser.add_argument("--size", type=int, help=f"image size in pixels (default {ThreeBallsConfig.size})")
    parser.add_argument("--method", choices=("cpu", "gpu"), help=f"ray casting (default {ThreeBallsConfig.method})")


def run_three_balls_command(args: argparse.Namespace) -> int:
    from .registry import parse_models
    from .three_balls import run_three_balls

    models = parse_models(args.models)
    with terminal_progress() as progress:
        summary = run_three_balls(args.out, models, weights_files=_weights_files(args.weights), progress=progress,
                                  **given_options(size=args.size, method=args.method))
    for model, reason in summary["skipped"].items():
        print(f"skipped {model}: {reason}", file=sys.stderr)
    for model, numbers in summary["models"].items():
        print(f"{model}: colour sensitivity {numbers['colour_sensitivity_mean']:.3f} (mean over heads), "
              f"{numbers['colour_sensitivity_max']:.3f} (most sensitive head)")
    print(f"open {(args.out / 'index.html').resolve()}")
    return 0 if summary["models"] else 1


COMMANDS = [
    Command("probe", "last-layer attention of DINO/CLIP/SAM/LiteMedSAM on captures: per-head maps, grids, "
            "AUROC per head and segment, summary.json, index.html", configure_probe, run_probe),
    Command("three-balls", "the paper's colour experiment: three spheres rendered with three colours and with one, "
            "how much each model's attention heads change", configure_three_balls, run_three_balls_command),
]
