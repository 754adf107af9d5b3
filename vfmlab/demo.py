"""``vfmlab demo``: the main pipeline on the bundled sample CT, ending in a scene Slicer opens and a report.

The demo is a list of stages (:data:`DEMO_STAGES`). The first loads the sample into a real MRML
scene with its reference segmentation and saves it; features append their own stage (render and
probe, segment, train) that reads and extends the shared :class:`DemoContext`. Everything is written
into a staging folder and moved into the output folder at the end, so an interrupted demo never
leaves a half-written scene behind.
"""
from __future__ import annotations

import importlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import sample_data
from .atomic import write_json
from .errors import InputError
from .volume_io import check_labels, stem
from .report import Report, swatch
from .viz import orthogonal_overlay_png
from .volume import Volume


@dataclass(frozen=True)
class DemoInputs:
    volume: Path
    labels: Path | None
    label_names: dict[int, str]

    @classmethod
    def bundled(cls) -> "DemoInputs":
        return cls(sample_data.sample_ct_path(), sample_data.sample_labels_path(), sample_data.sample_label_names())


@dataclass
class DemoContext:
    """What the stages share: the staging folder, the MRML scene and nodes, the report and summary."""

    inputs: DemoInputs
    staging: Path
    report: Report
    progress: Callable[[int, str], None] | None = None  # ``progress(steps_done, message)`` once per step
    fast: bool = False  # bounded work per stage (tests, quick looks); stages say what they cut
    summary: dict = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)  # every check must pass for the demo to succeed
    scene: Any = None
    volume_node: Any = None
    segmentation_node: Any = None
    volume: Volume | None = None
    labels: np.ndarray | None = None

    def step(self, message: str) -> None:
        if self.progress is not None:
            self.progress(1, message)


def scene_stage(ctx: DemoContext) -> None:
    """Load the volume and its labels into a real MRML scene, save it, and re-load it to verify."""
    import slicerio

    from . import mrml

    ctx.scene = scene = mrml.new_scene()
    ctx.step("loading volume into MRML")
    volume_node = mrml.load_volume_node(scene, ctx.inputs.volume, name=stem(ctx.inputs.volume))
    ctx.volume_node, ctx.volume = volume_node, mrml.volume_from_node(volume_node)
    name = volume_node.GetName()
    if ctx.inputs.labels is not None:
        ctx.step("importing reference labels")
        labels_node = mrml.load_volume_node(scene, ctx.inputs.labels, labelmap=True)
        ctx.labels = mrml.volume_from_node(labels_node).array
        scene.RemoveNode(labels_node)
        check_labels(ctx.labels, ctx.volume, ctx.inputs.labels)
        ctx.segmentation_node = mrml.add_segmentation_from_labels(
            scene, ctx.labels, volume_node, names=ctx.inputs.label_names, node_name=f"{name} reference"
        )
        mrml.save_segmentation_node(ctx.segmentation_node, ctx.staging / f"{name}.seg.nrrd")
    mrml.save_volume_node(volume_node, ctx.staging / f"{name}.nrrd")
    ctx.step("saving and re-loading the scene")
    scene_path = mrml.save_scene(scene, ctx.staging / "scene.mrml")
    reloaded = mrml.load_scene(scene_path)
    back = mrml.volume_from_node(reloaded.GetFirstNodeByName(name))
    ctx.checks["volume voxels identical after reload"] = bool(np.array_equal(back.array, ctx.volume.array))
    ctx.checks["volume geometry identical after reload"] = bool(
        np.allclose(back.ijk_to_ras, ctx.volume.ijk_to_ras, atol=1e-6)
    )
    segments = []
    if ctx.segmentation_node is not None:
        written = set(mrml.segment_names(ctx.segmentation_node).values())
        seg_back = reloaded.GetFirstNodeByClass("vtkMRMLSegmentationNode")
        ctx.checks["segment names identical after reload"] = set(mrml.segment_names(seg_back).values()) == written
        by_slicerio = slicerio.read_segmentation(str(ctx.staging / f"{name}.seg.nrrd"))
        ctx.checks["slicerio reads every segment"] = {s["name"] for s in by_slicerio["segments"]} == written
        segments = _segment_table(ctx)
    ctx.summary.update(volume=ctx.volume.info(), source=str(ctx.inputs.volume), scene=scene_path.name,
                       segments=segments)
    _report_scene(ctx, segments)


def _segment_table(ctx: DemoContext) -> list[dict]:
    voxel_ml = float(np.prod(ctx.volume.spacing)) / 1000.0
    counts = dict(zip(*np.unique(ctx.labels[ctx.labels > 0], return_counts=True)))
    segmentation = ctx.segmentation_node.GetSegmentation()
    rows = []
    for index in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(index)
        voxels = int(counts.get(segment.GetLabelValue(), 0))
        rows.append({"name": segment.GetName(), "label": int(segment.GetLabelValue()),
                     "color": list(segment.GetColor()), "voxels": voxels, "volume_ml": voxels * voxel_ml})
    return rows


def _report_scene(ctx: DemoContext, segments: list[dict]) -> None:
    report = ctx.report
    report.heading("Volume")
    report.table(["property", "value"], [[key, json.dumps(value)] for key, value in ctx.volume.info().items()])
    colors = {s["label"]: tuple(s["color"]) for s in segments}
    picture = orthogonal_overlay_png(ctx.volume, ctx.staging / "slices.png", ctx.labels, colors)
    report.image(picture, "Axial, coronal and sagittal slices with the reference labels", ctx.staging)
    report.heading("Slicer scene")
    report.paragraph(f"Open {ctx.summary['scene']} in 3D Slicer (File > Add Data, or drag and drop).")
    if segments:
        report.heading(f"Reference segments ({len(segments)})")
        rows = sorted(segments, key=lambda s: -s["voxels"])
        report.table(["", "segment", "label", "voxels", "volume (mL)"],
                     [[swatch(s["color"]), s["name"], s["label"], s["voxels"], s["volume_ml"]] for s in rows])


# "module:function" of each stage after the scene stage, run in order; imported when the demo runs.
DEMO_STAGES: list[str] = [
    "vfmlab.probes.demo_stage:run",
    "vfmlab.segment.demo_stage:run",
    "vfmlab.dvr.demo_stage:run",
]


def run_demo(out_dir: str | Path, inputs: DemoInputs | None = None,
             progress: Callable[[int, str], None] | None = None, fast: bool = False) -> dict:
    """Run every stage into ``out_dir``; returns the summary that is also written as ``summary.json``."""
    inputs = inputs or DemoInputs.bundled()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".demo-", dir=out_dir))
    try:
        ctx = DemoContext(inputs, staging, Report("VFM Volume Lab demo"), progress, fast)
        scene_stage(ctx)
        for target in DEMO_STAGES:
            module_name, function_name = target.split(":")
            getattr(importlib.import_module(module_name), function_name)(ctx)
        from . import mrml

        mrml.save_scene(ctx.scene, staging / "scene.mrml")  # again: later stages added nodes
        ctx.step("writing report")
        ctx.report.heading("Checks")
        for check, passed in ctx.checks.items():
            ctx.report.paragraph(f"{'PASS' if passed else 'FAIL'}: {check}", status=passed)
        ctx.report.write(staging / "index.html")
        ctx.summary["checks"] = ctx.checks
        write_json(staging / "summary.json", ctx.summary)
        for item in staging.iterdir():
            target = out_dir / item.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(item, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    failed = [check for check, passed in ctx.checks.items() if not passed]
    if failed:
        raise InputError(f"demo verification failed: {', '.join(failed)}", out_dir)
    return ctx.summary
