"""Slicer markups (points and ROI boxes placed in any slice view) → prompts in a slice's pixel frame."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..slices import SliceStack
from ..volume import Volume


@dataclass(frozen=True)
class SlicePrompt:
    """A prompt located on one slice: pixel box ``(x0, y0, x1, y1)`` and points ``(x, y)`` with labels."""

    axis: str
    index: int
    box: tuple[float, float, float, float] | None
    points: np.ndarray  # (N, 2) as (x = column, y = row)
    point_labels: np.ndarray  # (N,) 1 inside, 0 outside


def control_points_world(markups_node) -> np.ndarray:
    """``(N, 3)`` RAS positions of a markups node's control points, parent transforms applied."""
    points = np.zeros((markups_node.GetNumberOfControlPoints(), 3))
    for n in range(len(points)):
        markups_node.GetNthControlPointPositionWorld(n, points[n])
    return points


def roi_corners_world(roi_node) -> np.ndarray:
    """The 8 RAS corners of an ROI markups node (which may be rotated)."""
    bounds = np.zeros(6)
    roi_node.GetRASBounds(bounds)
    if roi_node.GetNumberOfControlPoints() == 0 or not np.all(bounds[1::2] >= bounds[::2]):
        raise InputError(f"ROI '{roi_node.GetName()}' is not placed yet")
    lows, highs = bounds[::2], bounds[1::2]
    return np.array([[x, y, z] for x in (lows[0], highs[0]) for y in (lows[1], highs[1]) for z in (lows[2], highs[2])])


def slice_prompt(
    volume: Volume,
    axis: str,
    positive_points: np.ndarray | None = None,
    negative_points: np.ndarray | None = None,
    box_corners: np.ndarray | None = None,
    slice_index: int | None = None,
) -> SlicePrompt:
    """Map RAS points and box corners onto ``axis`` slices; all must fall on one slice.

    The slice is ``slice_index`` when given (e.g. the slice view's current slice; the box is then
    projected onto it), else the slice holding the points.
    """
    stack = SliceStack.of(volume, axis)
    positive = np.zeros((0, 3)) if positive_points is None else np.atleast_2d(positive_points)
    negative = np.zeros((0, 3)) if negative_points is None else np.atleast_2d(negative_points)
    points = np.concatenate([positive, negative])
    labels = np.concatenate([np.ones(len(positive), int), np.zeros(len(negative), int)])
    located = stack.ras_to_slice(volume, points) if len(points) else np.zeros((0, 3), int)
    if slice_index is None:
        if not len(located):
            if box_corners is None:
                raise InputError("place at least one point or a box")
            box_slices = stack.ras_to_slice(volume, box_corners)[:, 0]
            slice_index = int(round((box_slices.min() + box_slices.max()) / 2))
        else:
            slice_index = int(located[0, 0])
    off_slice = located[:, 0] != slice_index
    if off_slice.any():
        raise InputError(
            f"points lie on {axis} slices {sorted(set(located[:, 0].tolist()))}; place all points of one prompt "
            f"on the same slice ({slice_index})"
        )
    box = None
    if box_corners is not None:
        corners = stack.ras_to_slice(volume, _clip_to_volume(volume, box_corners))
        box = (float(corners[:, 2].min()), float(corners[:, 1].min()), float(corners[:, 2].max()), float(corners[:, 1].max()))
    return SlicePrompt(axis, slice_index, box, located[:, [2, 1]].astype(float), labels)


def _clip_to_volume(volume: Volume, ras: np.ndarray) -> np.ndarray:
    """A box may reach past the volume's edge: clip its corners to the voxel grid in IJK."""
    ijk = np.clip(volume.ras_to_ijk_points(ras), 0, np.array(volume.shape_ijk) - 1)
    return volume.ijk_to_ras_points(ijk)
