"""Slices of a volume as Slicer displays them, as writable numpy views, with exact voxel mapping.

A :class:`SliceStack` re-indexes a ``(K, J, I)`` array as ``(slice, row, col)`` for one anatomical
axis, using only transposes and flips (no resampling), so each pixel IS one voxel:

- axial: rows run anterior → posterior, columns patient right → left (radiological convention);
- coronal: rows superior → inferior, columns patient right → left;
- sagittal: rows superior → inferior, columns anterior → posterior;
- the slice index increases towards +S, +A and +R (along the RAS axis normal to the slice), as
  Slicer's slice offset does.

This is the orientation medical 2D models (MedSAM, LiteMedSAM) were trained on for axial CT; feeding
them mirrored or transposed slices costs accuracy. Oblique volumes are handled along their nearest
anatomical axes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .volume import Volume

AXES = ("axial", "coronal", "sagittal")
# For each view: (RAS axis of the slice normal, RAS axis down the rows, RAS axis along the columns),
# each with the sign the index increases towards (+1: R, A, S; -1: L, P, I).
_LAYOUT = {
    "axial": ((2, +1), (1, -1), (0, -1)),
    "coronal": ((1, +1), (2, -1), (0, -1)),
    "sagittal": ((0, +1), (2, -1), (1, -1)),
}


@dataclass(frozen=True)
class SliceStack:
    """``(slice, row, col)`` view of a volume's voxel grid for one axis."""

    axis: str
    array_axes: tuple[int, int, int]  # numpy axis of the (K, J, I) array behind slice, row, col
    flips: tuple[bool, bool, bool]
    shape: tuple[int, int, int]  # (slices, rows, cols)
    pixel_spacing: tuple[float, float]  # mm per row, mm per column

    @classmethod
    def of(cls, volume: Volume, axis: str) -> "SliceStack":
        if axis not in _LAYOUT:
            raise InputError(f"unknown slice axis '{axis}'; use one of {', '.join(AXES)}")
        nearest_ras = np.abs(volume.direction).argmax(axis=0)  # RAS axis that each of I, J, K runs along
        if len(set(nearest_ras.tolist())) != 3:
            raise InputError("the volume's axes are too oblique to map onto axial/coronal/sagittal slices")
        array_axes, flips = [], []
        for ras_axis, sign in _LAYOUT[axis]:
            ijk_axis = int(np.flatnonzero(nearest_ras == ras_axis)[0])
            array_axes.append(2 - ijk_axis)  # I, J, K are numpy axes 2, 1, 0
            flips.append(bool(np.sign(volume.direction[ras_axis, ijk_axis]) != sign))
        shape = tuple(volume.array.shape[a] for a in array_axes)
        spacing_kji = volume.spacing[::-1]
        return cls(axis, tuple(array_axes), tuple(flips), shape,
                   (spacing_kji[array_axes[1]], spacing_kji[array_axes[2]]))

    def view(self, array: np.ndarray) -> np.ndarray:
        """``(slice, row, col)`` view of a ``(K, J, I)`` array; writing into it writes the array."""
        out = array.transpose(self.array_axes)
        for dim, flip in enumerate(self.flips):
            if flip:
                out = np.flip(out, axis=dim)
        return out

    def volume_mask(self, shape: tuple[int, int, int], index: int, slice_mask: np.ndarray) -> np.ndarray:
        """A bool ``(K, J, I)`` mask of ``shape`` holding ``slice_mask`` (as :meth:`view` shows it) on slice
        ``index`` and nothing elsewhere."""
        mask = np.zeros(shape, bool)
        self.view(mask)[index] = slice_mask
        return mask

    def voxel_to_slice(self, kji: np.ndarray) -> np.ndarray:
        """``(N, 3)`` integer ``(k, j, i)`` voxel indices → ``(N, 3)`` ``(slice, row, col)``."""
        kji = np.atleast_2d(np.asarray(kji))
        out = kji[:, list(self.array_axes)].copy()
        for dim, flip in enumerate(self.flips):
            if flip:
                out[:, dim] = self.shape[dim] - 1 - out[:, dim]
        return out

    def slice_to_voxel(self, src: np.ndarray) -> np.ndarray:
        """``(N, 3)`` ``(slice, row, col)`` → ``(N, 3)`` ``(k, j, i)`` voxel indices."""
        src = np.atleast_2d(np.asarray(src)).copy()
        for dim, flip in enumerate(self.flips):
            if flip:
                src[:, dim] = self.shape[dim] - 1 - src[:, dim]
        out = np.empty_like(src)
        out[:, list(self.array_axes)] = src
        return out

    def slice_through(self, volume: Volume, ras_point) -> int:
        """Index of the slice through a RAS point (e.g. a slice view's centre), wherever the point lies in
        the slice's plane; outside ``0 .. slices - 1`` when the point is beyond the volume's ends."""
        return int(self.voxel_to_slice(_nearest_voxels(volume, ras_point))[0, 0])

    def ras_to_slice(self, volume: Volume, ras: np.ndarray) -> np.ndarray:
        """RAS points ``(N, 3)`` → the ``(slice, row, col)`` of the voxel containing each point."""
        kji = _nearest_voxels(volume, ras)
        if (kji < 0).any() or (kji >= np.array(volume.array.shape)).any():
            raise InputError(f"point(s) {np.round(np.atleast_2d(ras), 1).tolist()} lie outside the volume")
        return self.voxel_to_slice(kji)


def _nearest_voxels(volume: Volume, ras) -> np.ndarray:
    """RAS points ``(N, 3)`` (or one point) → ``(N, 3)`` ``(k, j, i)`` of the nearest voxel centres, unbounded."""
    return np.rint(volume.ras_to_ijk_points(np.atleast_2d(np.asarray(ras, float)))).astype(int)[:, ::-1]
