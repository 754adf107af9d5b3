"""Demo stage: box-prompted, propagated LiteMedSAM segmentation of two organs, with Dice against the reference.

Each organ is prompted once, with its reference box on its middle axial slice, and propagated up and
down. Dice is reported next to the upper bound of giving the model the true box on every slice.
"""
from __future__ import annotations

import numpy as np

from ..metrics import segment_metrics
from ..viz import orthogonal_overlay_png
from .propagate import PropagationConfig, box_of, propagate
from .segmenter import Prompt

DEMO_ORGANS = {"spleen": 1, "kidney_right": 2}
FAST_RANGE = 5  # slices each way in --fast mode (tests), to bound CPU time


def run(ctx) -> None:
    from .. import mrml
    from .registry import build_segmenter
    from .volume_segmenter import VolumeSegmenter

    if ctx.labels is None:
        ctx.report.heading("Segmentation")
        ctx.report.paragraph("Skipped: no reference labels to prompt from and to score against.")
        return
    names = {value: name for value, name in ctx.inputs.label_names.items()}
    organs = {name: value for name, value in DEMO_ORGANS.items() if names.get(value) == name}
    engine = VolumeSegmenter(build_segmenter("litemedsam"), ctx.volume)
    labels_view = engine.stack("axial").view(ctx.labels)
    segmentation = ctx.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "LiteMedSAM propagated")
    config = PropagationConfig(max_slices=FAST_RANGE if ctx.fast else None)
    rows, summary, predicted_labels, seeds = [], {}, np.zeros(ctx.labels.shape, np.uint8), {}
    for number, (organ, value) in enumerate(organs.items(), start=1):
        ctx.step(f"segmenting {organ} with LiteMedSAM")
        reference = labels_view == value
        present = np.flatnonzero(reference.any(axis=(1, 2)))
        seed = int(present[len(present) // 2])
        seeds[organ] = seed
        result = propagate(engine, "axial", seed, Prompt(box=box_of(reference[seed])), config)
        # fast mode scores the slices it may reach; both modes take the same path (and types) from here
        scored = [int(k) for k in present if not ctx.fast or abs(k - seed) <= FAST_RANGE]
        truth = engine.to_volume_mask("axial", {k: reference[k] for k in scored})
        upper = engine.to_volume_mask("axial", {
            k: engine.segment_slice("axial", k, Prompt(box=box_of(reference[k]))).mask for k in scored})
        mask = engine.to_volume_mask("axial", result.masks)
        scored_mask = engine.to_volume_mask("axial", {k: engine.stack("axial").view(mask)[k] for k in scored})
        metrics = segment_metrics(scored_mask, truth, spacing=ctx.volume.spacing[::-1])
        upper_dice = segment_metrics(upper, truth)["dice"]
        mrml.add_segment(segmentation, ctx.volume.with_array(mask), ctx.volume_node, f"{organ} (LiteMedSAM)")
        predicted_labels[mask] = number
        summary[organ] = {"seed_slice": seed, "slices": list(result.slice_range), "reference_slices":
                          [int(present.min()), int(present.max())], "stopped": result.stop_reasons,
                          "dice": metrics["dice"], "hd95_mm": metrics["hd95_mm"], "dice_true_box_every_slice": upper_dice,
                          "scored_slices": [min(scored), max(scored)]}
        rows.append([organ, seed, f"{result.slice_range[0]}..{result.slice_range[1]}",
                     f"{present.min()}..{present.max()}", metrics["dice"], upper_dice, metrics["hd95_mm"],
                     "; ".join(f"{d}: {r}" for d, r in result.stop_reasons.items())])
    name = ctx.volume_node.GetName()
    mrml.save_segmentation_node(segmentation, ctx.staging / f"{name}_litemedsam.seg.nrrd")
    colors = {1: (0.9, 0.4, 0.1), 2: (0.2, 0.6, 1.0)}
    picture = orthogonal_overlay_png(ctx.volume, ctx.staging / "segmentation.png", predicted_labels, colors,
                                     slice_indices={"axial": next(iter(seeds.values()))})
    ctx.summary["segmentation"] = {"model": "litemedsam", "fast": ctx.fast, "organs": summary}
    for organ, values in summary.items():
        ctx.checks[f"LiteMedSAM {organ}: propagated Dice above 0.8"] = values["dice"] > 0.8
    ctx.report.heading("Segmentation: LiteMedSAM, one box prompt per organ, propagated")
    if ctx.fast:
        ctx.report.paragraph(f"Fast mode: at most {FAST_RANGE} slices each way; Dice on those slices only.")
    ctx.report.table(["organ", "prompted slice", "propagated over", "reference slices", "Dice",
                      "Dice, true box every slice", "HD95 (mm)", "why it stopped"], rows)
    ctx.report.image(picture, "Propagated segments (orange: spleen, blue: right kidney)", ctx.staging)
