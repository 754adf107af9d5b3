"""Glue between Slicer's MRML scene and :mod:`vfmlab` — the only package here that imports ``slicer``.

It uses MRML nodes and module-logic classes only (``vtkMRML*``, ``vtkSlicer*Logic``), which exist both
in the 3D Slicer application and in the ``slicer-core`` wheel, so the same code runs inside Slicer and
headless in the CLI, background jobs and tests.
"""
from .scene import new_scene, ensure_core_logic, save_scene, load_scene
from .volumes import (add_volume_node, volume_from_node, volume_geometry, update_volume_node, load_volume_node,
                      save_volume_node)
from .segmentations import (
    SegmentMode,
    add_segment,
    add_segmentation_from_labels,
    labels_from_segmentation,
    load_segmentation_node,
    save_segmentation_node,
    segment_mask,
    segment_names,
)

__all__ = [
    "SegmentMode",
    "add_segment",
    "add_segmentation_from_labels",
    "add_volume_node",
    "ensure_core_logic",
    "labels_from_segmentation",
    "load_scene",
    "load_segmentation_node",
    "load_volume_node",
    "new_scene",
    "save_scene",
    "save_segmentation_node",
    "save_volume_node",
    "segment_mask",
    "segment_names",
    "update_volume_node",
    "volume_from_node",
    "volume_geometry",
]
