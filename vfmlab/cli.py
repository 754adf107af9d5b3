"""The ``vfmlab`` command line.

Each subcommand is a (``configure``, ``run``) pair registered in :data:`COMMANDS`; later features add
theirs there. Errors a user can fix (:class:`VfmlabError`) print one line and exit with status 2.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import VfmlabError


def given_options(**options):
    """The options given on the command line: commands leave the others ``None`` so that the config
    dataclasses state every default once."""
    return {name: value for name, value in options.items() if value is not None}


@dataclass(frozen=True)
class Command:
    name: str
    summary: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _configure_info(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("volume", type=Path, help="volume file (NRRD, NIfTI, MHA/MHD, DICOM) or DICOM series folder")
    parser.add_argument("--series", help="series instance UID, for a folder holding several DICOM series")


def _run_info(args: argparse.Namespace) -> int:
    from .volume_io import read_volume

    print(json.dumps(read_volume(args.volume, series_uid=args.series).info(), indent=2))
    return 0


def _configure_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="output folder (created; existing files replaced)")
    parser.add_argument("--volume", type=Path, help="use this volume instead of the bundled sample CT")
    parser.add_argument("--labels", type=Path, help="reference label map on the volume's grid (with --volume)")
    parser.add_argument("--fast", action="store_true", help="bounded work per stage (a quick look; used by the tests)")


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import DemoInputs, run_demo
    from .progress import terminal_counter

    inputs = None
    if args.volume is not None:
        inputs = DemoInputs(args.volume, args.labels, {})
    with terminal_counter("demo") as counter:
        summary = run_demo(args.out, inputs, counter.advance, fast=args.fast)
    print(f"demo written to {args.out.resolve()}: open {summary['scene']} in 3D Slicer, index.html in a browser")
    failed = [name for name, passed in summary["checks"].items() if not passed]
    if failed:
        print("demo checks failed: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


# Feature modules that add subcommands: each defines ``COMMANDS: list[Command]`` and imports nothing
# heavy at module level, so ``vfmlab --help`` stays fast.
FEATURE_COMMAND_MODULES: list[str] = [
    "vfmlab.btvae.commands",
    "vfmlab.dvr.commands",
    "vfmlab.keyslices.commands",
    "vfmlab.models.commands",
    "vfmlab.render.commands",
    "vfmlab.probes.commands",
    "vfmlab.segment.commands",
    "vfmlab.server.commands",
]

COMMANDS: list[Command] = [
    Command("info", "print a volume's geometry (shape IJK, spacing, origin, direction, IJK→RAS, dtype, range) as JSON",
            _configure_info, _run_info),
    Command("demo", "run the pipeline on the bundled sample CT: MRML scene, .nrrd/.seg.nrrd/.mrml and an HTML report",
            _configure_demo, _run_demo),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vfmlab",
        description="VFM Volume Lab: volumes, Slicer scenes, foundation-model probes, DeepDVR and segmentation "
        "from the command line. The same core runs inside 3D Slicer's VFMVolumeLab and SegmentationTools modules.",
        epilog="Run 'vfmlab COMMAND --help' for a command's options.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"vfmlab {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands = list(COMMANDS)
    for module_name in FEATURE_COMMAND_MODULES:
        commands += importlib.import_module(module_name).COMMANDS
    for command in commands:
        sub = subparsers.add_parser(command.name, help=command.summary, description=command.summary)
        command.configure(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except VfmlabError as error:
        print(f"vfmlab {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vfmlab {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
