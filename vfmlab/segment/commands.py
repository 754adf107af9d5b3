"""``vfmlab segment``, ``segment-eval`` and ``segment-finetune``."""
from __future__ import annotations

import argparse
import csv
import json
import sys
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from .. import atomic
from ..cli import Command, given_options
from ..errors import InputError
from ..models import names
from ..progress import TerminalReporter
from .config import SegmentConfig, SegmenterFinetuneConfig


def _numbers(text: str, count: int | None = None) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise InputError(f"'{text}' is not a comma-separated list of numbers") from None
    if count is not None and len(values) != count:
        raise InputError(f"'{text}' needs {count} numbers")
    return values


def segment_config(args: argparse.Namespace) -> SegmentConfig:
    """The options given on the command line over :class:`SegmentConfig`'s defaults."""
    return SegmentConfig(**given_options(model=args.model, axis=args.axis, backend=args.backend,
                                         segment_name=args.name, device=args.device))


def prompt_specs(args: argparse.Namespace, config: SegmentConfig) -> list[dict]:
    """Prompts from ``--prompts FILE`` (a dict or a list of dicts) or from ``--box``/``--points``/``--slice``."""
    if args.prompts:
        data = json.loads(Path(args.prompts).read_text())
        return data if isinstance(data, list) else [data]
    if args.slice is None or (args.box is None and args.points is None):
        raise InputError("give --slice with --box and/or --points, or a --prompts file")
    spec: dict = {"axis": config.axis, "slice": args.slice, "name": config.segment_name}
    if args.box:
        spec["box"] = _numbers(args.box, 4)
    if args.points:
        triples = [_numbers(p, 3) for p in args.points.split(";") if p.strip()]
        spec["points"] = [t[:2] for t in triples]
        spec["labels"] = [int(t[2]) for t in triples]
    return [spec]


def _configure_segment(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("volume", type=Path)
    parser.add_argument("--model", help=f"{', '.join(names('segmenter'))} or a fine-tuned model's name "
                        f"(default {SegmentConfig.model}; 'vfmlab models' lists them)")
    parser.add_argument("--weights", type=Path, help="use this checkpoint (e.g. a fine-tuned best.pt)")
    parser.add_argument("--axis", choices=["axial", "coronal", "sagittal"], help=f"default {SegmentConfig.axis}")
    parser.add_argument("--slice", type=int, help="voxel index of the slice along the axis normal to the view")
    parser.add_argument("--box", help="'a0,b0,a1,b1': voxel indices of the in-plane axes in IJK order (axial: i,j)")
    parser.add_argument("--points", help="'a,b,label;...' with label 1 inside, 0 outside")
    parser.add_argument("--prompts", type=Path, help="JSON prompt(s): {axis, slice, box, points, labels, name, frame}; "
                        "prompts sharing a name (e.g. one per key slice) make one segment, propagated from all")
    parser.add_argument("--propagate", action="store_true", help="carry the mask through neighbouring slices")
    parser.add_argument("--range", type=int, help="at most this many slices each way when propagating")
    parser.add_argument("--name", help=f"segment name (default {SegmentConfig.segment_name!r}; a taken name gets a "
                        "numbered suffix)")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--backend", choices=["auto", "torch", "onnx", "cuda"],
                        help=f"where the image encoder runs (default {SegmentConfig.backend}; auto: cuda when torch "
                             "sees a GPU, else ONNX Runtime when installed, else torch)")
    parser.add_argument("--out", type=Path, required=True, help="SEG.seg.nrrd; an existing file gains new segments")
    parser.add_argument("--server", metavar="URL", help="run the model on this model server (vfmlab serve); "
                                                       "its token in $VFMLAB_TOKEN")


def _prompt_of(located):
    from .segmenter import Prompt

    return Prompt(located.box, located.points, located.point_labels)


class _InProcess:
    """Segments with a model built here."""

    def __init__(self, config: SegmentConfig, weights, volume):
        from .registry import build_segmenter
        from .volume_segmenter import VolumeSegmenter

        self.engine = VolumeSegmenter(build_segmenter(config.model, weights, config.device, backend=config.backend),
                                      volume)

    def masks(self, located: list, rules: dict, propagate: bool, on_slice):
        """``(K, J, I)`` mask, (first, last) slice and the stop reasons of one segment's prompts (one axis)."""
        from .propagate import PropagationConfig
        from .seeds import segment_prompts

        result = segment_prompts(self.engine, located[0].axis, {one.index: _prompt_of(one) for one in located},
                                 PropagationConfig(**rules) if propagate else None, lambda record: on_slice())
        return result.mask, result.slices, result.stop_reasons


class _ThroughServer:
    """Segments on a model server (``--server URL``, token in ``$VFMLAB_TOKEN``); the volume is sent once."""

    def __init__(self, url: str, config: SegmentConfig, volume):
        import os

        from ..client import TOKEN_ENV, ModelClient

        self.client, self.model, self.volume = ModelClient(url, os.environ.get(TOKEN_ENV, "")), config.model, volume
        self.sha256 = self.client.send_volume(volume.array, volume.ijk_to_ras)

    def masks(self, located: list, rules: dict, propagate: bool, on_slice):
        from ..client import ServerError
        from ..slices import SliceStack

        axis = located[0].axis
        prompts = [(one.index, one.box, one.points, one.point_labels) for one in located]
        if not propagate:
            stack, mask = SliceStack.of(self.volume, axis), np.zeros(self.volume.array.shape, bool)
            for prompt in prompts:
                answer = self.client.segment(self.model, self.sha256, axis, *prompt)
                mask |= stack.volume_mask(self.volume.array.shape, prompt[0], answer.mask)
            return mask, (min(p[0] for p in prompts), max(p[0] for p in prompts)), {}
        started = self.client.start_propagation(self.model, self.sha256, axis, *prompts[0], rules=rules,
                                                seeds=prompts[1:])
        done = [0]

        def advance(status: dict) -> None:
            for _ in range(status["done"] - done[0]):
                on_slice()
            done[0] = status["done"]

        ended = self.client.wait_operation(started["id"], on_status=advance)
        if ended["state"] != "finished":
            raise ServerError(f"propagation {ended['state']} on the server: {ended['error']}")
        result = self.client.propagation_mask(started["id"])
        return result.mask, result.slices, result.stop_reasons


def segments_of(specs: list[dict], located: list, default_name: str) -> dict[str, list]:
    """The located prompts by segment name: prompts sharing a name (on several slices of one axis, e.g. at
    the key slices ``vfmlab slices`` chose) make one segment, propagated from all of them together."""
    segments: dict[str, list] = {}
    for spec, one in zip(specs, located):
        segments.setdefault(spec.get("name") or default_name, []).append(one)
    for name, prompts in segments.items():
        axes, indices = {one.axis for one in prompts}, [one.index for one in prompts]
        if len(axes) > 1:
            raise InputError(f"the prompts of segment '{name}' lie on {sorted(axes)} slices; give one segment's "
                             "prompts on one axis, or name them differently")
        if len(set(indices)) != len(indices):
            raise InputError(f"segment '{name}' has two prompts on {prompts[0].axis} slice "
                             f"{max(indices, key=indices.count)}; merge them into one prompt (a box and points)")
    return segments


def _run_segment(args: argparse.Namespace) -> int:
    from .. import mrml
    from ..progress import terminal_counter
    from ..volume_io import read_volume, stem
    from .prompt_specs import slice_prompt_from_spec

    config = segment_config(args)
    specs = prompt_specs(args, config)
    if args.server and args.weights:
        raise InputError("--weights names a file here; with --server, name a model the server has with --model")
    scene = mrml.new_scene()
    # Voxel indices on the command line are the file's own, as every other tool shows them; Slicer's
    # reader would reverse an axis of a left-handed file, so the volume is read as stored.
    volume = read_volume(args.volume)
    volume_node = mrml.add_volume_node(scene, volume, name=stem(args.volume))
    segments = segments_of(specs, [slice_prompt_from_spec(volume, spec) for spec in specs], config.segment_name)
    segmentation = (mrml.load_segmentation_node(scene, args.out) if args.out.exists()
                    else scene.AddNewNodeByClass("vtkMRMLSegmentationNode"))
    engine = _ThroughServer(args.server, config, volume) if args.server else _InProcess(config, args.weights, volume)
    rules = {"max_slices": args.range} if args.range is not None else {}
    summary = []
    for name, located in segments.items():
        bar = terminal_counter(f"propagating {name}", unit="slice") if args.propagate else nullcontext()
        with bar as counter:
            mask, slices, stops = engine.masks(located, rules, args.propagate, counter.advance if counter else None)
        segment_id = mrml.add_segment(segmentation, volume.with_array(mask), volume_node, name)
        summary.append({"segment": mrml.segment_names(segmentation)[segment_id], "slices": list(slices),
                        "prompted": sorted(one.index for one in located), "stopped": stops})
    mrml.save_segmentation_node(segmentation, args.out)
    print(json.dumps({"output": str(args.out), "segments": summary}, indent=1))
    return 0


def _parse_label_map(text: str) -> dict[str, int]:
    pairs = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        if not value.strip().lstrip("-").isdigit():
            raise InputError(f"--labels item '{item}' is not NAME=VALUE")
        pairs[name.strip()] = int(value)
    return pairs


def _configure_eval(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("segmentation", type=Path, help="SEG.seg.nrrd to evaluate")
    parser.add_argument("reference", type=Path, help="reference label map file (the grid metrics are computed on)")
    parser.add_argument("--labels", required=True, help="'segment name=reference label value,...' e.g. liver=5,spleen=1")
    parser.add_argument("--out", type=Path, help="write the table as .csv or .json")


def _run_eval(args: argparse.Namespace) -> int:
    from .evaluation import evaluate_segmentation

    rows = evaluate_segmentation(args.segmentation, args.reference, _parse_label_map(args.labels))
    columns = list(rows[0])
    print("  ".join(f"{c:>12}" for c in columns))
    for row in rows:
        print("  ".join(f"{v:>12.4f}" if isinstance(v, float) else f"{v!s:>12}" for v in row.values()))
    if args.out:
        if args.out.suffix == ".json":
            atomic.write_json(args.out, rows)
        else:
            with atomic.atomic_path(args.out) as temp, temp.open("w", newline="") as handle:
                writer = csv.DictWriter(handle, columns)
                writer.writeheader()
                writer.writerows(rows)
    return 0


def _configure_finetune(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("volume", type=Path)
    parser.add_argument("labels", type=Path, help="label map on the volume's grid")
    parser.add_argument("--segments", required=True, help="'name=label value,...' to train on, e.g. kidney_right=2,pancreas=7")
    parser.add_argument("--model", help=f"an HQ segmenter: hq_litemedsam, hq_sam_vit_b, hq_sam_vit_tiny "
                        f"(default {SegmenterFinetuneConfig.model})")
    parser.add_argument("--axis", choices=["axial", "coronal", "sagittal"], help=f"default {SegmenterFinetuneConfig.axis}")
    parser.add_argument("--epochs", type=int, help=f"default {SegmenterFinetuneConfig.epochs}")
    parser.add_argument("--lr", type=float, help=f"learning rate (default {SegmenterFinetuneConfig.learning_rate})")
    parser.add_argument("--batch-size", type=int,
                        help=f"prompts per optimiser step (default {SegmenterFinetuneConfig.batch_size})")
    parser.add_argument("--cosine", action="store_true", help="decay the learning rate to 0 over the run (cosine)")
    parser.add_argument("--train-decoder", action="store_true", help="train the whole mask decoder, not only the HQ parts")
    parser.add_argument("--max-slices", type=int, help="at most this many slices per segment (evenly spaced)")
    parser.add_argument("--register", metavar="NAME", help="register the best checkpoint as user model NAME")
    parser.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    parser.add_argument("--device")
    parser.add_argument("--out", type=Path, required=True, help="RUN_DIR: config.json, best.pt, last.pt, metrics.jsonl, summary.json")


def _run_finetune(args: argparse.Namespace) -> int:
    from ..volume_io import read_labels, read_volume
    from ..weights import register_user_model
    from .finetune import finetune, finetune_run

    volume = read_volume(args.volume)
    labels = read_labels(args.labels, volume)
    given = given_options(model=args.model, axis=args.axis, epochs=args.epochs, learning_rate=args.lr,
                          batch_size=args.batch_size, max_slices_per_segment=args.max_slices, device=args.device)
    config = SegmenterFinetuneConfig(segments=_parse_label_map(args.segments), cosine_schedule=args.cosine,
                                     train_decoder=args.train_decoder, **given)
    finetune_run(args.out).clear_stop()  # a stop asked of an earlier run of this folder is not this run's
    reporter = TerminalReporter("segment-finetune")
    try:
        summary = finetune(volume, labels, config, args.out, resume=args.resume, reporter=reporter)
    finally:
        reporter.close()
    if args.register and summary["stopped"]:
        print("stopped before the end: not registered; resume with --resume, then register", file=sys.stderr)
    elif args.register:
        summary["registered_model"] = register_user_model(args.register, summary["best_checkpoint"], config.model).name
    print(json.dumps(summary, indent=1))
    return 0


COMMANDS = [
    Command("segment", "prompted SAM-family segmentation of a volume (box/points on a slice, optional propagation) "
            "into a .seg.nrrd", _configure_segment, _run_segment),
    Command("segment-eval", "Dice, IoU, precision, recall and HD95 of segments against a reference label map",
            _configure_eval, _run_eval),
    Command("segment-finetune", "fine-tune HQ-LiteMedSAM / HQ-SAM on your own segments (encoder frozen), "
            "validated against the un-tuned model", _configure_finetune, _run_finetune),
]
