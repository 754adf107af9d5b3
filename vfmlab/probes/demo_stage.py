"""Demo stage: render the sample CT with CT-AAA from 8 views and probe the captures with the models at hand.

Small images (256 x 256) keep it CPU-cheap (``--fast``: 4 views instead of 8); models whose weights
are not on this machine are reported and skipped (LiteMedSAM's ship with its package, so at least one
probe runs).
"""
from __future__ import annotations

import numpy as np

from ..cameras import CaptureSet
from ..render.images import read_label_png, read_rgb, write_rgb_png

VIEWS, FAST_VIEWS, SIZE, PRESET = 8, 4, 256, "CT-AAA"  # --fast (tests): half the orbit


def _montage(images: list[np.ndarray], columns: int = 4) -> np.ndarray:
    rows = [np.concatenate(images[i:i + columns], axis=1) for i in range(0, len(images), columns)]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
    return np.concatenate(rows, axis=0)


def _label_colors(labels: np.ndarray, colors: dict[int, tuple[float, float, float]]) -> np.ndarray:
    rgb = np.zeros((*labels.shape, 3), np.uint8)
    for value, color in colors.items():
        rgb[labels == value] = np.round(np.asarray(color) * 255).astype(np.uint8)
    return rgb


def run(ctx) -> None:
    from ..mrml.volume_rendering import remove_volume_renderings
    from ..render.capture import RenderSettings, SegmentLabels, capture_views
    from ..render.poses import Orbit, orbit_records
    from .registry import PROBES
    from .report import add_probe_sections
    from .run import probe_captures

    views_count = FAST_VIEWS if ctx.fast else VIEWS
    ctx.step(f"rendering {views_count} views with {PRESET}")
    labels = None
    if ctx.labels is not None:
        colors = {s["label"]: tuple(s["color"]) for s in ctx.summary.get("segments", [])}
        labels = SegmentLabels(ctx.labels, ctx.inputs.label_names, colors)
    records = orbit_records(ctx.volume, Orbit(views=views_count, elevation=10.0), SIZE, SIZE)
    folder = ctx.staging / "captures"
    capture = capture_views(ctx.scene, ctx.volume_node, records, folder,
                            RenderSettings(preset=PRESET, width=SIZE, height=SIZE), labels=labels,
                            source_path=ctx.inputs.volume)
    # The saved demo scene holds data only: a scene read without Slicer's volume rendering module
    # (as the demo's reload check does) cannot hold volume rendering nodes.
    remove_volume_renderings(ctx.volume_node)
    views = [read_rgb(folder / record.image) for record in capture.views]
    foreground = [float((view.max(axis=-1) > 20).mean()) for view in views]

    ctx.step("probing the captures")
    summary = probe_captures(folder, list(PROBES), ctx.staging / "probes")

    report = ctx.report
    report.heading(f"Volume rendering ({PRESET}) and attention probes")
    report.paragraph(f"{views_count} views on an orbit around the volume, rendered headless with Slicer's volume "
                     f"rendering logic and displayable manager; camera records in captures/cameras.json.")
    report.image(write_rgb_png(ctx.staging / "captures_montage.png", _montage(views)),
                 f"The {views_count} captures ({SIZE} x {SIZE})", ctx.staging)
    if labels is not None:
        ids = [_label_colors(read_label_png(folder / r.labels_image), labels.colors) for r in capture.views]
        report.image(write_rgb_png(ctx.staging / "segment_ids_montage.png", _montage(ids)),
                     "Segment IDs of the same views: the first segment along each ray that CT-AAA shows",
                     ctx.staging)
    add_probe_sections(report, summary, ctx.staging / "probes", ctx.staging)

    ctx.summary["probes"] = {
        "preset": PRESET, "views": views_count, "fast": ctx.fast, "image_size": SIZE, "foreground_fraction": foreground,
        "models": {m: {"summary": r["summary"], "seconds_per_capture": r["seconds_per_capture"],
                       "attention": r["attention"]} for m, r in summary["models"].items()},
        "skipped": sorted(summary["skipped"]),
    }
    ctx.checks[f"every {PRESET} capture shows part of the volume"] = all(0.02 < f < 0.9 for f in foreground)
    ctx.checks["cameras.json holds a record per capture"] = len(CaptureSet.load(folder).views) == views_count
    ctx.checks["at least one attention probe ran"] = bool(summary["models"])
    ctx.checks["every probe that ran wrote its maps for every capture"] = all(
        (ctx.staging / "probes" / model / f"{record.image[:-4]}_attention.npy").is_file()
        for model in summary["models"] for record in capture.views
    )
