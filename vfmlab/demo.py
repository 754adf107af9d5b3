"""``vfmlab demo``: the main pipeline on the bundled sample CT, ending in a scene Slicer opens and a report.

Everything is written into a staging folder first and moved into the output folder at the end, so
an interrupted demo never leaves a half-written scene behind.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import sample_data
from .errors import InputError
from .io import check_labels, stem
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


def _step(progress, message: str) -> None:
    if progress is not None:
        progress.set_description(message)
        progress.update(1)


def build_scene(inputs: DemoInputs, staging: Path, progress=None) -> tuple[dict, Volume, np.ndarray | None]:
    """Load the volume and its labels into a real MRML scene, save it, and re-load it to verify.

    Returns the summary, the volume and its label array (``None`` without labels).
    """
    import slicerio

    from . import mrml

    scene = mrml.new_scene()
    _step(progress, "loading volume into MRML")
    volume_node = mrml.load_volume_node(scene, inputs.volume, name=stem(inputs.volume))
    volume = mrml.volume_from_node(volume_node)
    summary: dict = {"volume": volume.info(), "source": str(inputs.volume)}
    labels = None
    if inputs.labels is not None:
        _step(progress, "importing reference labels")
        labels_node = mrml.load_volume_node(scene, inputs.labels, labelmap=True)
        labels = mrml.volume_from_node(labels_node).array
        scene.RemoveNode(labels_node)
        check_labels(labels, volume, inputs.labels)
        segmentation = mrml.add_segmentation_from_labels(
            scene, labels, volume_node, names=inputs.label_names, node_name=f"{volume_node.GetName()} reference"
        )
        mrml.save_segmentation_node(segmentation, staging / f"{volume_node.GetName()}.seg.nrrd")
    mrml.save_volume_node(volume_node, staging / f"{volume_node.GetName()}.nrrd")
    _step(progress, "saving scene")
    scene_path = mrml.save_scene(scene, staging / "scene.mrml")

    _step(progress, "re-loading scene to verify")
    reloaded = mrml.load_scene(scene_path)
    back = mrml.volume_from_node(reloaded.GetFirstNodeByName(volume_node.GetName()))
    checks = {
        "volume voxels identical after reload": bool(np.array_equal(back.array, volume.array)),
        "volume geometry identical after reload": bool(np.allclose(back.ijk_to_ras, volume.ijk_to_ras, atol=1e-6)),
    }
    segments = []
    if labels is not None:
        seg_back = reloaded.GetFirstNodeByClass("vtkMRMLSegmentationNode")
        written = set(mrml.segment_names(segmentation).values())
        checks["segment names identical after reload"] = set(mrml.segment_names(seg_back).values()) == written
        read_by_slicerio = slicerio.read_segmentation(str(staging / f"{volume_node.GetName()}.seg.nrrd"))
        checks["slicerio reads every segment"] = {s["name"] for s in read_by_slicerio["segments"]} == written
        voxel_ml = float(np.prod(volume.spacing)) / 1000.0
        counts = dict(zip(*np.unique(labels[labels > 0], return_counts=True)))
        for sid in mrml.segment_names(segmentation):
            segment = segmentation.GetSegmentation().GetSegment(sid)
            voxels = int(counts.get(segment.GetLabelValue(), 0))
            segments.append({"name": segment.GetName(), "label": int(segment.GetLabelValue()),
                             "color": list(segment.GetColor()), "voxels": voxels, "volume_ml": voxels * voxel_ml})
    summary.update(scene=scene_path.name, checks=checks, segments=segments)
    return summary, volume, labels


def write_report(summary: dict, volume: Volume, labels: np.ndarray | None, staging: Path) -> Path:
    colors = {s["label"]: tuple(s["color"]) for s in summary["segments"]}
    picture = orthogonal_overlay_png(volume, staging / "slices.png", labels, colors)
    report = Report("VFM Volume Lab demo")
    report.heading("Volume")
    info = summary["volume"]
    report.table(["property", "value"], [[key, json.dumps(value)] for key, value in info.items()])
    report.image(picture, "Axial, coronal and sagittal slices with the reference labels", staging)
    report.heading("Slicer scene")
    report.paragraph(f"Open {summary['scene']} in 3D Slicer (File > Add Data, or drag and drop).")
    for check, passed in summary["checks"].items():
        report.paragraph(f"{'PASS' if passed else 'FAIL'}: {check}", status=passed)
    if summary["segments"]:
        report.heading(f"Reference segments ({len(summary['segments'])})")
        rows = sorted(summary["segments"], key=lambda s: -s["voxels"])
        report.table(["", "segment", "label", "voxels", "volume (mL)"],
                     [[swatch(s["color"]), s["name"], s["label"], s["voxels"], s["volume_ml"]] for s in rows])
    return report.write(staging / "index.html")


def run_demo(out_dir: str | Path, inputs: DemoInputs | None = None, progress=None) -> dict:
    """Run the demo into ``out_dir``; returns the summary that is also written as ``summary.json``."""
    inputs = inputs or DemoInputs.bundled()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".demo-", dir=out_dir))
    try:
        summary, volume, labels = build_scene(inputs, staging, progress)
        _step(progress, "writing report")
        write_report(summary, volume, labels, staging)
        (staging / "summary.json").write_text(json.dumps(summary, indent=1))
        for item in staging.iterdir():
            target = out_dir / item.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(item, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    failed = [check for check, passed in summary["checks"].items() if not passed]
    if failed:
        raise InputError(f"demo verification failed: {', '.join(failed)}", out_dir)
    return summary
