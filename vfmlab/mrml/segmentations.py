"""Segmentation nodes ⇄ label arrays on a reference volume's grid, and safe segment edits.

A model's output never silently replaces a user's segment: :func:`add_segment` creates a new
segment unless the caller names the segment to change and how (replace, add, subtract).
"""
from __future__ import annotations

import colorsys
from enum import Enum
from pathlib import Path

import numpy as np
import slicer
import vtk

from ..errors import InputError
from ..volume import Volume
from .scene import attached_storage_node, read_with_storage_node, write_with_storage_node
from .volumes import array_from_image_data, image_data_from_array, node_ijk_to_world, numpy_to_matrix


class SegmentMode(str, Enum):
    """How a mask is applied to a segmentation."""

    NEW = "new"  # a new segment; an existing name gets a numbered suffix
    REPLACE = "replace"  # overwrite the named segment's voxels
    ADD = "add"  # union with the named segment
    SUBTRACT = "subtract"  # remove the mask's voxels from the named segment


def default_color(index: int) -> tuple[float, float, float]:
    """Distinct colours by golden-ratio hue steps, so neighbouring labels never look alike."""
    return colorsys.hsv_to_rgb((0.1 + index * 0.618034) % 1.0, 0.65, 0.95)


def segment_names(segmentation_node) -> dict[str, str]:
    """Segment ID → segment name, in the segmentation's order."""
    segmentation = segmentation_node.GetSegmentation()
    return {
        segmentation.GetNthSegmentID(i): segmentation.GetNthSegment(i).GetName()
        for i in range(segmentation.GetNumberOfSegments())
    }


def _check_on_grid(array: np.ndarray, reference_node, what: str) -> None:
    i, j, k = reference_node.GetImageData().GetDimensions()
    if array.shape != (k, j, i):
        raise InputError(
            f"{what} has shape {tuple(array.shape)} (K, J, I) but volume '{reference_node.GetName()}' "
            f"has {(k, j, i)}"
        )


def _oriented_image(array: np.ndarray, reference_node):
    oriented = image_data_from_array(array.astype(np.uint8), slicer.vtkOrientedImageData())
    oriented.SetImageToWorldMatrix(numpy_to_matrix(node_ijk_to_world(reference_node)))
    return oriented


def _export_labels(segmentation_node, segment_ids: list[str], reference_node) -> np.ndarray:
    """Label array on the reference grid where segment ``segment_ids[n]`` has value ``n + 1``."""
    scene = segmentation_node.GetScene()
    labelmap = slicer.vtkMRMLLabelMapVolumeNode()
    scene.AddNode(labelmap)
    try:
        ids = vtk.vtkStringArray()
        for segment_id in segment_ids:
            ids.InsertNextValue(segment_id)
        logic = slicer.vtkSlicerSegmentationsModuleLogic  # static methods: no scene observers to set up
        if not logic.ExportSegmentsToLabelmapNode(segmentation_node, ids, labelmap, reference_node):
            raise InputError(f"could not export segments of '{segmentation_node.GetName()}' to a label map")
        return array_from_image_data(labelmap.GetImageData())
    finally:
        _remove_with_display(scene, labelmap)


def _remove_with_display(scene, labelmap) -> None:
    """Remove a temporary label map with the display and colour table nodes the export made for it."""
    display = labelmap.GetDisplayNode()
    color = display.GetColorNode() if display is not None else None
    scene.RemoveNode(labelmap)
    if display is not None:
        scene.RemoveNode(display)
    if color is not None and color.GetScene() is scene and color.GetType() == color.User:
        scene.RemoveNode(color)  # the export's own table of segment colours, not a shared default one


def segment_mask(segmentation_node, segment_id: str, reference_node) -> np.ndarray:
    """Boolean ``(K, J, I)`` mask of one segment, resampled onto the reference volume's grid."""
    if segmentation_node.GetSegmentation().GetSegment(segment_id) is None:
        raise InputError(f"segmentation '{segmentation_node.GetName()}' has no segment '{segment_id}'")
    return _export_labels(segmentation_node, [segment_id], reference_node) > 0


def labels_from_segmentation(
    segmentation_node, reference_node, segment_ids: list[str] | None = None
) -> tuple[np.ndarray, dict[int, str]]:
    """Label array on the reference grid plus label value → segment name.

    Values are 1..N in segment order; where segments overlap the later one wins.
    """
    names = segment_names(segmentation_node)
    segment_ids = list(names) if segment_ids is None else segment_ids
    labels = _export_labels(segmentation_node, segment_ids, reference_node)
    return labels, {n + 1: names[segment_id] for n, segment_id in enumerate(segment_ids)}


def add_segmentation_from_labels(
    scene,
    labels: np.ndarray,
    reference_node,
    names: dict[int, str] | None = None,
    colors: dict[int, tuple[float, float, float]] | None = None,
    node_name: str = "Segmentation",
):
    """New segmentation node with one segment per non-zero label, named and coloured, on one shared layer."""
    _check_on_grid(labels, reference_node, "label array")
    values = [int(v) for v in np.unique(labels) if v != 0]
    if not values:
        raise InputError("the label array is empty (all zero); there is nothing to segment")
    names = names or {}
    rgb = {value: (colors or {}).get(value, default_color(n)) for n, value in enumerate(values)}
    color_table = slicer.vtkMRMLColorTableNode()
    color_table.SetTypeToUser()
    color_table.SetNumberOfColors(max(values) + 1)
    for value in values:
        color_table.SetColor(value, names.get(value, f"Label {value}"), *rgb[value], 1.0)
    labelmap = slicer.vtkMRMLLabelMapVolumeNode()
    segmentation = slicer.vtkMRMLSegmentationNode()
    added = []
    try:
        for node in (color_table, labelmap):
            scene.AddNode(node)
            added.append(node)
        labelmap.SetIJKToRASMatrix(numpy_to_matrix(node_ijk_to_world(reference_node)))
        labelmap.SetAndObserveImageData(image_data_from_array(labels.astype(np.int32)))
        labelmap.CreateDefaultDisplayNodes()
        labelmap.GetDisplayNode().SetAndObserveColorNodeID(color_table.GetID())
        segmentation.SetName(scene.GenerateUniqueName(node_name))
        scene.AddNode(segmentation)
        segmentation.CreateDefaultDisplayNodes()
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(reference_node)
        if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation):
            scene.RemoveNode(segmentation)
            raise InputError("Slicer could not import the label array into a segmentation")
        # The colour table quantises to 8 bits per channel; set the exact colours asked for.
        imported = segmentation.GetSegmentation()
        for index in range(imported.GetNumberOfSegments()):
            segment = imported.GetNthSegment(index)
            segment.SetColor(*rgb[segment.GetLabelValue()])
    finally:
        for node in added:
            display = node.GetDisplayNode() if hasattr(node, "GetDisplayNode") else None
            if display is not None:
                scene.RemoveNode(display)
            scene.RemoveNode(node)
    return segmentation


def _unique_segment_name(segmentation, name: str) -> str:
    taken = {segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())}
    if name not in taken:
        return name
    n = 2
    while f"{name} ({n})" in taken:
        n += 1
    return f"{name} ({n})"


def add_segment(
    segmentation_node,
    mask: np.ndarray | Volume,
    reference_node,
    name: str,
    color: tuple[float, float, float] | None = None,
    mode: SegmentMode | str = SegmentMode.NEW,
    segment_id: str | None = None,
) -> str:
    """Write a boolean mask into the segmentation; returns the segment ID.

    ``mask`` is a :class:`Volume` carrying its own voxel grid (preferred: it is re-indexed exactly onto
    the reference node's grid, which a reader may have stored in another voxel order, and refused when
    the grids differ physically), or a bare ``(K, J, I)`` array already on the reference node's grid.
    ``mode="new"`` (default) always creates a segment. ``replace``/``add``/``subtract`` change the
    segment named by ``segment_id`` and nothing else; they refuse to run without it.
    """
    mode = SegmentMode(mode)
    if isinstance(mask, Volume):
        i, j, k = reference_node.GetImageData().GetDimensions()
        mask = mask.array_on_grid(node_ijk_to_world(reference_node), (k, j, i))
    _check_on_grid(mask, reference_node, "mask")
    mask = np.asarray(mask).astype(bool)
    segmentation = segmentation_node.GetSegmentation()
    if segmentation_node.GetScene() is None:
        raise InputError("the segmentation node is not in a scene")
    if mode is SegmentMode.NEW:
        if not mask.any():
            raise InputError(f"the mask for '{name}' is empty; no segment was added")
        if segmentation.GetNumberOfSegments() == 0:
            segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(reference_node)
        color = color or default_color(segmentation.GetNumberOfSegments())
        segment_id = segmentation.AddEmptySegment("", _unique_segment_name(segmentation, name), color)
    else:
        if segment_id is None or segmentation.GetSegment(segment_id) is None:
            raise InputError(
                f"mode '{mode.value}' changes an existing segment: name it with segment_id "
                f"(segments: {segment_names(segmentation_node)})"
            )
        current = segment_mask(segmentation_node, segment_id, reference_node)
        if mode is SegmentMode.ADD:
            mask = current | mask
        elif mode is SegmentMode.SUBTRACT:
            mask = current & ~mask
    oriented = _oriented_image(mask, reference_node)
    ok = slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
        oriented,
        segmentation_node,
        segment_id,
        slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE,
        oriented.GetExtent(),
    )
    if not ok:
        raise InputError(f"Slicer could not write the mask into segment '{segment_id}'")
    return segment_id


def load_segmentation_node(scene, path: str | Path, name: str | None = None):
    """Read a ``.seg.nrrd`` (or other segmentation file) through Slicer's segmentation storage node."""
    path = Path(path)
    if not path.is_file():
        raise InputError("does not exist", path)
    node = slicer.vtkMRMLSegmentationNode()
    node.SetName(scene.GenerateUniqueName(name or path.name.split(".")[0]))
    read_with_storage_node(scene, node, slicer.vtkMRMLSegmentationStorageNode(), path,
                           "could not be read as a Slicer segmentation")
    node.CreateDefaultDisplayNodes()
    return node


def save_segmentation_node(segmentation_node, path: str | Path) -> Path:
    """Write ``.seg.nrrd`` atomically with a storage node that stays attached (a saved scene refers to it)."""
    storage = attached_storage_node(segmentation_node, "vtkMRMLSegmentationStorageNode")
    return write_with_storage_node(segmentation_node, storage, path)
