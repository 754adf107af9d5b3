"""``vfmlab slices`` (key slices of a volume) and ``vfmlab slices-similar`` (volumes ranked by their key slices)."""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from ..cli import Command, given_options
from .config import KeySliceConfig


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    defaults = KeySliceConfig()
    parser.add_argument("--model", help=f"probe encoder that scores the slices (default {defaults.model})")
    parser.add_argument("--axis", choices=("axial", "coronal", "sagittal"), help=f"default {defaults.axis}")
    parser.add_argument("--ratio", type=float, help=f"share of the slices to keep (default {defaults.ratio})")
    parser.add_argument("--budget", type=int, help="number of slices to keep, instead of a ratio")
    parser.add_argument("--mode", choices=("diverse", "contiguous"), help=f"default {defaults.mode}")


def _config(args: argparse.Namespace) -> KeySliceConfig:
    return replace(KeySliceConfig(), **given_options(model=args.model, axis=args.axis, ratio=args.ratio,
                                                      budget=args.budget, mode=args.mode))


def configure_slices(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("volume", type=Path, help="3D volume file or DICOM series folder")
    parser.add_argument("--out", type=Path, required=True, help="output folder (scores.csv, selection.json, strip.png)")
    parser.add_argument("--labels", type=Path, help="label map on the volume's grid: segment component and coverage")
    _add_config_options(parser)


def _compute(path: Path, config: KeySliceConfig, probe, labels_path: Path | None = None):
    from ..progress import terminal_counter
    from ..volume_io import read_labels, read_volume
    from .run import key_slices

    volume = read_volume(path)
    labels = read_labels(labels_path, volume) if labels_path is not None else None
    with terminal_counter(f"scoring {config.axis} slices with {config.model}") as counter:
        return volume, key_slices(volume, config, probe, labels, progress=lambda done, total: counter.advance())


def run_slices(args: argparse.Namespace) -> int:
    from .run import write_outputs

    from ..probes.registry import build_probe

    config = _config(args)
    volume, result = _compute(args.volume, config, build_probe(config.model), args.labels)
    files = write_outputs(args.out, result, config, volume, source=str(args.volume))
    chosen = result.selection.indices
    print(f"{len(chosen)} of {result.selection.slices} {config.axis} slices: {chosen}")
    print(json.dumps(result.selection.coverage, indent=1))
    print(f"written: {', '.join(str(path) for path in files.values())}")
    return 0


def configure_similar(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("query", type=Path, help="a 'vfmlab slices' output folder, or a volume")
    parser.add_argument("others", type=Path, nargs="+", help="output folders or volumes to rank")
    _add_config_options(parser)


def run_similar(args: argparse.Namespace) -> int:
    from .fusion import rank_by_similarity
    from .run import DESCRIPTOR_NPY, load_outputs

    config = _config(args)
    probe = None  # built once, the first time a volume (not an output folder) is given

    def descriptor(path: Path):
        nonlocal probe
        if path.is_dir() and (path / DESCRIPTOR_NPY).is_file():
            return load_outputs(path)[1]
        if probe is None:
            from ..probes.registry import build_probe

            probe = build_probe(config.model)
        return _compute(path, config, probe)[1].descriptor

    ranked = rank_by_similarity(descriptor(args.query), {str(path): descriptor(path) for path in args.others})
    for name, cosine in ranked:
        print(f"{cosine:.4f}  {name}")
    return 0


COMMANDS = [
    Command("slices", "score a volume's slices with a foundation-model encoder and choose key slices "
            "(scores.csv, selection.json, strip.png)", configure_slices, run_slices),
    Command("slices-similar", "rank volumes by the similarity of their key-slice descriptors",
            configure_similar, run_similar),
]
