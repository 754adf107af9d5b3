"""A scalar volume with its physical geometry, in Slicer's conventions.

Slicer works in RAS (right, anterior, superior); ITK-based files store LPS. A :class:`Volume` keeps
its geometry in RAS, exactly as a Slicer volume node does:

    IJK→RAS = [[D · diag(spacing), origin], [0, 0, 0, 1]]

where the columns of ``direction`` (D) are the RAS directions of the I, J and K axes. The voxel
array is stored as ``(K, J, I)`` — slowest axis first — which is what Slicer's ``arrayFromVolume``
and ``SimpleITK.GetArrayFromImage`` return, so arrays move between the three without transposes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import InputError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


@dataclass(frozen=True)
class Volume:
    """Voxel array ``(K, J, I)`` plus spacing ``(si, sj, sk)`` in mm, RAS origin and 3x3 RAS direction."""

    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    name: str = "volume"

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise InputError(
                f"a scalar 3D volume is needed, got an array of shape {self.array.shape}"
            )
        direction = np.asarray(self.direction, dtype=float)
        if direction.shape != (3, 3):
            raise InputError(f"direction must be 3x3, got shape {direction.shape}")
        object.__setattr__(self, "direction", direction)
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
        object.__setattr__(self, "origin", tuple(float(o) for o in self.origin))
        if min(self.spacing) <= 0:
            raise InputError(f"spacing must be positive, got {self.spacing}")

    @classmethod
    def from_ijk_to_ras(cls, array: np.ndarray, ijk_to_ras: np.ndarray, name: str = "volume") -> "Volume":
        """Build from a ``(K, J, I)`` array and a 4x4 IJK→RAS matrix (as a volume node stores it)."""
        m = np.asarray(ijk_to_ras, dtype=float)
        linear = m[:3, :3]
        spacing = np.linalg.norm(linear, axis=0)
        return cls(array, tuple(spacing), tuple(m[:3, 3]), linear / spacing, name)

    @classmethod
    def from_lps(cls, array: np.ndarray, spacing, origin_lps, direction_lps, name: str = "volume") -> "Volume":
        """Build from ITK-style LPS geometry (``direction_lps`` 3x3, columns are axis directions)."""
        direction = LPS_TO_RAS @ np.asarray(direction_lps, dtype=float).reshape(3, 3)
        origin = LPS_TO_RAS @ np.asarray(origin_lps, dtype=float)
        return cls(array, tuple(spacing), tuple(origin), direction, name)

    @property
    def shape_ijk(self) -> tuple[int, int, int]:
        """Number of voxels along I, J, K (the order Slicer and ITK report sizes in)."""
        k, j, i = self.array.shape
        return (i, j, k)

    @property
    def ijk_to_ras(self) -> np.ndarray:
        """4x4 homogeneous IJK→RAS matrix."""
        m = np.eye(4)
        m[:3, :3] = self.direction * np.asarray(self.spacing)
        m[:3, 3] = self.origin
        return m

    @property
    def ras_to_ijk(self) -> np.ndarray:
        return np.linalg.inv(self.ijk_to_ras)

    @property
    def origin_lps(self) -> np.ndarray:
        return LPS_TO_RAS @ np.asarray(self.origin)

    @property
    def direction_lps(self) -> np.ndarray:
        return LPS_TO_RAS @ self.direction

    def ijk_to_ras_points(self, ijk: np.ndarray) -> np.ndarray:
        """Map ``(N, 3)`` continuous IJK indices to RAS points."""
        ijk = np.atleast_2d(np.asarray(ijk, dtype=float))
        return ijk @ self.ijk_to_ras[:3, :3].T + self.ijk_to_ras[:3, 3]

    def ras_to_ijk_points(self, ras: np.ndarray) -> np.ndarray:
        """Map ``(N, 3)`` RAS points to continuous IJK indices (round to get the voxel holding the point)."""
        ras = np.atleast_2d(np.asarray(ras, dtype=float))
        m = self.ras_to_ijk
        return ras @ m[:3, :3].T + m[:3, 3]

    def with_array(self, array: np.ndarray, name: str | None = None) -> "Volume":
        """Same geometry, new voxels (e.g. a label map or a filtered copy); shapes must agree."""
        if array.shape != self.array.shape:
            raise InputError(
                f"array of shape {array.shape} (K, J, I) does not match the volume's {self.array.shape}"
            )
        return Volume(array, self.spacing, self.origin, self.direction, name or self.name)

    def array_on_grid(self, ijk_to_ras: np.ndarray, shape_kji: tuple[int, int, int], atol: float = 1e-3) -> np.ndarray:
        """This volume's voxels re-indexed onto another grid that holds the same voxel centres.

        Two readers can order one file's voxels differently (Slicer's reader reverses an axis of a
        left-handed NRRD, SimpleITK keeps the file's order), so an array is only meaningful with its
        own IJK→RAS. This maps it exactly (transposes and flips, no interpolation) onto the grid given
        by ``ijk_to_ras`` and ``(K, J, I)`` shape, and refuses a grid that is physically different.
        """
        to_target = np.linalg.inv(np.asarray(ijk_to_ras, float)) @ self.ijk_to_ras  # our IJK → target IJK
        linear, offset = np.rint(to_target[:3, :3]), np.rint(to_target[:3, 3])
        target_ijk_shape = np.asarray(shape_kji)[::-1]
        source_ijk_shape = np.asarray(self.shape_ijk)
        is_reordering = (
            np.allclose(to_target[:3, :3], linear, atol=atol) and np.allclose(to_target[:3, 3], offset, atol=atol)
            and (np.abs(linear).sum(axis=0) == 1).all() and (np.abs(linear).sum(axis=1) == 1).all()
        )
        source_axis = np.abs(linear).argmax(axis=1)  # for each target IJK axis, ours that runs along it
        sign = linear[np.arange(3), source_axis]
        if is_reordering:
            is_reordering = (source_ijk_shape[source_axis] == target_ijk_shape).all() and all(
                offset[b] == (0 if sign[b] > 0 else target_ijk_shape[b] - 1) for b in range(3))
        if not is_reordering:
            raise InputError(
                f"the array's voxel grid (IJK→RAS {np.round(self.ijk_to_ras, 4).tolist()}, shape "
                f"{self.array.shape}) is not the target grid (IJK→RAS {np.round(ijk_to_ras, 4).tolist()}, shape "
                f"{tuple(shape_kji)}) in another voxel order; resample it onto the volume first"
            )
        out = self.array.transpose([2 - int(source_axis[2 - n]) for n in range(3)])  # numpy axes are K, J, I
        flipped = [n for n in range(3) if sign[2 - n] < 0]
        return np.flip(out, axis=flipped) if flipped else out

    def same_geometry(self, other: "Volume", atol: float = 1e-4) -> bool:
        """True when both volumes sample the same physical grid."""
        return self.array.shape == other.array.shape and np.allclose(
            self.ijk_to_ras, other.ijk_to_ras, atol=atol
        )

    def info(self) -> dict:
        """Geometry and value summary as JSON-friendly values (what ``vfmlab info`` prints)."""
        finite = self.array[np.isfinite(self.array)] if self.array.dtype.kind == "f" else self.array
        value_range = [float(finite.min()), float(finite.max())] if finite.size else [None, None]
        return {
            "name": self.name,
            "shape_ijk": list(self.shape_ijk),
            "spacing": list(self.spacing),
            "origin_ras": list(self.origin),
            "direction_ras": self.direction.tolist(),
            "ijk_to_ras": self.ijk_to_ras.tolist(),
            "dtype": str(self.array.dtype),
            "value_range": value_range,
        }
