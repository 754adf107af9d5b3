"""Predictions into an MRML scene: the mask as a new segment, the variance as a scalar volume beside it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vfmlab import mrml
from vfmlab.errors import InputError

from .prediction import VolumePrediction

# Heat colour maps a scene from the Slicer application or the slicer-core wheel has; first found wins.
UNCERTAINTY_COLORS = ("vtkMRMLColorTableNodeFileInferno.txt", "vtkMRMLPETProceduralColorNodePET-Heat",
                      "vtkMRMLColorTableNodeRainbow")


@dataclass
class PredictionNodes:
    segmentation_node: Any
    segment_id: str
    uncertainty_node: Any | None  # None for deterministic models or when not asked for


def add_prediction(
    scene,
    volume_node,
    prediction: VolumePrediction,
    segment_name: str,
    segmentation_node=None,
    uncertainty: bool = True,
    uncertainty_name: str | None = None,
) -> PredictionNodes:
    """Add the predicted mask as a NEW segment (in ``segmentation_node``, or a new segmentation) and,
    with ``uncertainty``, the per-voxel variance of the z samples as a scalar volume on the same grid.

    Refuses before touching the scene when the mask is empty or a deterministic model is asked for
    an uncertainty map; removes what it added if a later step fails.
    """
    if not prediction.mask.any():
        raise InputError(f"the model predicted no voxel of '{segment_name}' in this volume; nothing was added")
    if uncertainty and not prediction.probabilistic:
        raise InputError("this model is deterministic (a U-Net): it has no uncertainty map; use btvae or vae")
    added, new_segment_id = [], None
    try:
        if segmentation_node is None:
            segmentation_node = mrml.add_segmentation_from_labels(
                scene, prediction.mask.astype(np.uint8), volume_node, names={1: segment_name},
                node_name=f"{volume_node.GetName()} {segment_name}",
            )
            added.append(segmentation_node)
            segment_id = segmentation_node.GetSegmentation().GetNthSegmentID(0)
        else:
            segment_id = new_segment_id = mrml.add_segment(
                segmentation_node, prediction.mask, volume_node, segment_name, mode="new"
            )
        uncertainty_node = None
        if uncertainty:
            volume = mrml.volume_from_node(volume_node).with_array(prediction.variance.astype(np.float32))
            uncertainty_node = mrml.add_volume_node(
                scene, volume, name=uncertainty_name or f"{volume_node.GetName()} {segment_name} uncertainty"
            )
            added.append(uncertainty_node)
            _show_as_heat_map(scene, uncertainty_node, float(prediction.variance.max()))
    except BaseException:
        for node in added:
            scene.RemoveNode(node)
        if new_segment_id is not None:
            segmentation_node.GetSegmentation().RemoveSegment(new_segment_id)
        raise
    return PredictionNodes(segmentation_node, segment_id, uncertainty_node)


def _show_as_heat_map(scene, node, maximum: float) -> None:
    display = node.GetDisplayNode()
    if display is None:
        return
    color_id = next((c for c in UNCERTAINTY_COLORS if scene.GetNodeByID(c) is not None), None)
    if color_id is not None:
        display.SetAndObserveColorNodeID(color_id)
    display.SetAutoWindowLevel(0)
    # Variance of a probability is at most 0.25; scale to what occurs so small spreads stay visible.
    display.SetWindowLevelMinMax(0.0, maximum if maximum > 0 else 0.25)
