"""Prompts written as specs (the command line's ``--slice/--box/--points`` and ``--prompts`` files) placed
on a volume's slices: voxel indices are the file's own, RAS in millimetres is physical."""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from .config import SegmentConfig


def slice_prompt_from_spec(volume, spec: dict):
    """A prompt spec in voxel indices (``frame: ijk``, the default) or RAS mm (``frame: ras``) → SlicePrompt.

    In voxel indices, ``slice`` is the index along the volume axis normal to the view, and the box
    ``(a0, b0, a1, b1)`` and points ``(a, b)`` use the two in-plane axes in I, J, K order (axial: i, j).
    """
    from ..mrml.markups import SlicePrompt, slice_prompt
    from ..slices import SliceStack

    axis = spec.get("axis", SegmentConfig.axis)
    if spec.get("frame", "ijk") == "ras":
        points = np.asarray(spec.get("points", []), float).reshape(-1, 3)
        labels = np.asarray(spec.get("labels", [1] * len(points)))
        return slice_prompt(volume, axis, points[labels == 1], points[labels == 0],
                            np.asarray(spec["box"], float).reshape(2, 3) if "box" in spec else None)
    stack = SliceStack.of(volume, axis)
    normal_kji = stack.array_axes[0]
    in_plane = sorted((a for a in range(3) if a != normal_kji), reverse=True)  # KJI axes, in I, J, K order

    def to_slice(pairs: np.ndarray) -> np.ndarray:
        kji = np.zeros((len(pairs), 3), int)
        kji[:, normal_kji] = int(spec["slice"])
        kji[:, in_plane[0]], kji[:, in_plane[1]] = pairs[:, 0], pairs[:, 1]
        if (kji < 0).any() or (kji >= np.array(volume.array.shape)).any():
            raise InputError(f"prompt {pairs.tolist()} on {axis} slice {spec['slice']} lies outside the volume")
        return stack.voxel_to_slice(kji)

    box = None
    if "box" in spec:
        corners = to_slice(np.rint(np.asarray(spec["box"], float)).astype(int).reshape(2, 2))
        box = (float(corners[:, 2].min()), float(corners[:, 1].min()), float(corners[:, 2].max()), float(corners[:, 1].max()))
    points = np.asarray(spec.get("points", []), float).reshape(-1, 2)
    located = to_slice(np.rint(points).astype(int)) if len(points) else np.zeros((0, 3), int)
    index = int(to_slice(np.zeros((1, 2), int))[0, 0])
    return SlicePrompt(axis, index, box, located[:, [2, 1]].astype(float),
                       np.asarray(spec.get("labels", [1] * len(points)), int))
