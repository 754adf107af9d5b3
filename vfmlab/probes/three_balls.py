"""The paper's "three balls" experiment: do a model's heads follow the colours a transfer function gives?

Three equal spheres (scalar values 100, 200, 300) are rendered twice from the same camera with Slicer's
volume rendering: once with a TF that colours them red, green and blue, once with one colour for all
three (same opacity). Each model is probed on both; per head, the total-variation distance
between its two attention maps is its colour sensitivity (0: the colours changed nothing). The paper
finds DINO's heads split the balls by colour while CLIP's and SAM's maps barely change.
"""
from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..atomic import write_json
from ..report import Report
from ..volume import Volume
from .config import ThreeBallsConfig
from .registry import get_spec

BALL_VALUES = (100, 200, 300)
MULTI_COLOURS = ((0.9, 0.15, 0.1), (0.15, 0.8, 0.15), (0.15, 0.3, 0.95))
SINGLE_COLOUR = (0.85, 0.75, 0.55)
CONDITIONS = ("multi_colour", "single_colour")


def three_balls_volume(length: int = 128) -> tuple[Volume, np.ndarray, dict[int, str]]:
    """Three spheres in a row along R in a ``length`` x 0.4 ``length``² box at 1 mm; labels 1..3 mark the balls."""
    side = int(round(0.4 * length))
    k, j, i = np.mgrid[0:side, 0:side, 0:length].astype(float)
    radius = 0.15 * length
    array = np.zeros((side, side, length), np.int16)
    labels = np.zeros_like(array, dtype=np.uint16)
    names = {}
    for index, value in enumerate(BALL_VALUES):
        centre_i = length * (0.18 + 0.32 * index) - 0.5
        inside = (i - centre_i) ** 2 + (j - (side - 1) / 2) ** 2 + (k - (side - 1) / 2) ** 2 <= radius ** 2
        array[inside], labels[inside] = value, index + 1
        names[index + 1] = f"ball {index + 1} (value {value})"
    origin = (-(length - 1) / 2.0, -(side - 1) / 2.0, -(side - 1) / 2.0)
    return Volume(array, (1.0, 1.0, 1.0), origin, np.eye(3), "three_balls"), labels, names


def ball_tf(colours: tuple[tuple[float, float, float], ...], opacity_per_mm: float = 0.05) -> dict:
    """TF record: each ball's value gets its colour (constant ±40 around it) and the same partial opacity.

    Semi-transparent emission without lighting, as direct volume rendering shows such data: a ray through a
    ball's centre accumulates more than one grazing its edge, so each ball is a disc fading towards its rim.
    Nearest interpolation: a sample takes one voxel's value, so no ball gets a rim in another ball's colour
    from values interpolated between it and the background (and binary spheres give no shading artefacts).
    """
    color, opacity = [], [[0, 0.0], [BALL_VALUES[0] - 41, 0.0]]
    for value, rgb in zip(BALL_VALUES, colours):
        color += [[value - 40, *rgb], [value + 40, *rgb]]
        opacity += [[value - 40, opacity_per_mm], [value + 40, opacity_per_mm]]
    return {"color": color, "scalar_opacity": opacity, "shading": False, "interpolation": "nearest"}


def render_conditions(out_dir: Path, size: int, method: str = "cpu") -> dict[str, Path]:
    """Capture folders of both conditions (one view each, with the balls' segment IDs)."""
    from .. import mrml
    from ..render.capture import RenderSettings, SegmentLabels, capture_views
    from ..render.poses import Orbit, orbit_records

    volume, labels, names = three_balls_volume()
    scene = mrml.new_scene()
    try:
        node = mrml.add_volume_node(scene, volume)
        records = orbit_records(volume, Orbit(views=1, elevation=20.0, margin=1.0), size, size)
        folders = {}
        for condition, colours in zip(CONDITIONS, (MULTI_COLOURS, (SINGLE_COLOUR,) * 3)):
            settings = RenderSettings(preset=None, transfer_function=ball_tf(colours), method=method,
                                      width=size, height=size)
            folders[condition] = out_dir / condition
            capture_views(scene, node, records, folders[condition], settings, labels=SegmentLabels(labels, names))
        return folders
    finally:
        scene.Clear(1)


def run_three_balls(
    out_dir: str | Path,
    models: list[str],
    size: int = ThreeBallsConfig.size,
    method: str = ThreeBallsConfig.method,
    weights_files: dict[str, str | Path] | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> dict:
    """Render both conditions, probe them with ``models``; write three_balls.csv, summary.json and index.html."""
    from . import metrics
    from .run import probe_captures

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = progress or (lambda fraction, message: None)
    report(0.0, "rendering the three balls")
    folders = render_conditions(out_dir, size, method)
    probed, built = {}, {}
    for index, condition in enumerate(CONDITIONS):
        report(0.1 + 0.45 * index, f"probing the {condition.replace('_', ' ')} render")
        probed[condition] = probe_captures(folders[condition], models, out_dir / f"probe_{condition}",
                                           weights_files=weights_files, built=built)
    rows, per_model = [], {}
    for model in probed["multi_colour"]["models"]:
        maps = {c: np.load(out_dir / f"probe_{c}" / model / "view_000_attention.npy") for c in CONDITIONS}
        change = metrics.colour_sensitivity(maps["multi_colour"], maps["single_colour"])
        heads = {c: probed[c]["models"][model]["heads"] for c in CONDITIONS}
        for head, value in enumerate(change):
            rows.append({"model": model, "head": head, "colour_sensitivity": float(value),
                         **{f"best_{c}": heads[c][head]["best_segment"] for c in CONDITIONS},
                         **{f"auroc_{c}": heads[c][head]["best_auroc"] for c in CONDITIONS}})
        per_model[model] = {
            "colour_sensitivity_mean": float(change.mean()),
            "colour_sensitivity_max": float(change.max()),
            **{f"balls_separated_{c}": probed[c]["models"][model]["summary"]["distinct_segments"] for c in CONDITIONS},
        }
    summary = {"models": per_model, "skipped": probed["multi_colour"]["skipped"],
               "ball_values": list(BALL_VALUES), "image_size": size}
    if rows:
        with open(out_dir / "three_balls.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    write_json(out_dir / "summary.json", summary)
    _write_report(out_dir, summary, probed)
    report(1.0, "three balls done")
    return summary


def _write_report(out_dir: Path, summary: dict, probed: dict) -> Path:
    report = Report("Three balls: colour sensitivity of attention heads")
    report.paragraph("Same volume, camera and opacity; only the transfer function's colours differ. Colour "
                     "sensitivity = total-variation distance between a head's two attention maps (0: unchanged).")
    for condition in CONDITIONS:
        report.image(out_dir / condition / "view_000.png", condition.replace("_", " "), out_dir)
    if summary["models"]:
        report.table(["model", "mean colour sensitivity", "max (one head)", "balls separated (colours)",
                      "balls separated (one colour)"],
                     [[m, v["colour_sensitivity_mean"], v["colour_sensitivity_max"], v["balls_separated_multi_colour"],
                       v["balls_separated_single_colour"]] for m, v in summary["models"].items()])
    for model, reason in summary["skipped"].items():
        report.paragraph(f"{model} ({get_spec(model).description}) skipped: {reason}", status=False)
    for model in summary["models"]:
        for condition in CONDITIONS:
            grid = out_dir / f"probe_{condition}" / probed[condition]["models"][model]["grid"]
            report.image(grid, f"{model}, {condition.replace('_', ' ')}", out_dir)
    return report.write(out_dir / "index.html")
