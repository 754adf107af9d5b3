"""``vfmlab render``: capture a volume rendered with a Slicer preset from an orbit of camera poses."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..cli import Command, given_options
from ..errors import InputError
from .poses import Orbit
from .settings import LABEL_MODES, RenderSettings


def _on_off(text: str) -> bool:
    if text.lower() not in ("on", "off"):
        raise argparse.ArgumentTypeError("use 'on' or 'off'")
    return text.lower() == "on"


def _rgb(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(0.0 <= v <= 1.0 for v in values):
        raise argparse.ArgumentTypeError("give three numbers in 0..1 separated by commas, e.g. 0,0,0")
    return values


def configure_render(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("volume", type=Path, help="volume file (NRRD, NIfTI, MHA/MHD) or DICOM series folder")
    parser.add_argument("--out", type=Path, required=True, help="output folder: view_NNN.png, cameras.json")
    parser.add_argument("--preset", help=f"Slicer volume rendering preset (default {RenderSettings.preset})")
    parser.add_argument("--shift", type=float,
                        help="move the preset's transfer function along the scalar axis (e.g. 1024 for HU+1024 data)")
    parser.add_argument("--views", type=int, help=f"number of camera poses on the orbit (default {Orbit.views})")
    parser.add_argument("--elevation", type=float, help=f"orbit elevation in degrees (default {Orbit.elevation:g})")
    parser.add_argument("--azimuth", type=float, help="azimuth of the first view, 0 = anterior")
    parser.add_argument("--size", type=int, help=f"image width and height in pixels (default {RenderSettings.width})")
    parser.add_argument("--method", choices=("cpu", "gpu"), help=f"ray casting (default {RenderSettings.method})")
    parser.add_argument("--shading", type=_on_off, help="on|off (default: the preset's own setting)")
    parser.add_argument("--background", type=_rgb, help="background RGB in 0..1 (default black)")
    parser.add_argument("--segmentation", type=Path,
                        help="a .seg.nrrd or a label map on the volume's grid: also writes labels_NNN.png")
    parser.add_argument("--label-names", type=Path, help='JSON {"1": "liver", ...} naming the label map values')
    parser.add_argument("--labels", choices=LABEL_MODES, default=LABEL_MODES[0],
                        help="segment IDs: of segments the TF shows (default) or the first segment along each ray")


def run_render(args: argparse.Namespace) -> int:
    from ..progress import terminal_progress
    from .capture import read_label_names, render_file

    if args.label_names and not args.segmentation:
        raise InputError("--label-names needs --segmentation")
    settings = RenderSettings(**given_options(preset=args.preset, shift=args.shift, method=args.method, width=args.size,
                                       height=args.size, background=args.background, shading=args.shading))
    orbit = Orbit(**given_options(views=args.views, elevation=args.elevation, azimuth_start=args.azimuth))
    names = read_label_names(args.label_names) if args.label_names else None
    with terminal_progress() as progress:
        capture = render_file(args.volume, args.out, settings, orbit, args.segmentation, names, args.labels,
                              progress)
    extra = " and segment IDs" if args.segmentation else ""
    print(f"{len(capture.views)} views{extra} written to {args.out.resolve()} (cameras.json)")
    return 0


COMMANDS = [
    Command("render", "render a volume with a Slicer preset from N camera poses: view_NNN.png + cameras.json "
            "(+ labels_NNN.png segment IDs with --segmentation)", configure_render, run_render),
]
