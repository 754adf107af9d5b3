"""Rays of captured views in the volume's sampling frame, clipped to the volume's physical box.

The marcher samples volumes with ``torch.nn.functional.grid_sample(align_corners=True)``, whose
coordinates run from -1 at the first voxel centre to +1 at the last, along I, J, K. A ray given in
RAS millimetres is mapped into that frame once (origin and direction), so sample positions are
``origin + t * direction`` with ``t`` still in millimetres: step sizes and opacity correction keep
their physical meaning while sampling needs no per-sample matrix product.

The box is the hull of the voxel centres, ``[-1, 1]^3`` here, as in VTK, whose image bounds (and
so its ray casters' ray ranges) run from the first to the last voxel centre.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..cameras import CameraRecord
from ..volume import Volume


@dataclass(frozen=True)
class VolumeGrid:
    """The sampling frame of a volume: its voxel count ``(K, J, I)`` and 4x4 IJK→RAS matrix."""

    shape_kji: tuple[int, int, int]
    ijk_to_ras: np.ndarray

    @classmethod
    def of(cls, volume: Volume) -> "VolumeGrid":
        return cls(tuple(int(n) for n in volume.array.shape), volume.ijk_to_ras)

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size along I, J, K in mm."""
        return np.linalg.norm(np.asarray(self.ijk_to_ras)[:3, :3], axis=0)

    @property
    def voxel_size(self) -> float:
        """``d_v`` of the paper's ``Δt = d_v / s``: the smallest spacing, as Slicer's sample distance uses."""
        return float(self.spacing.min())

    def ras_to_grid(self) -> np.ndarray:
        """4x4 matrix from RAS mm to grid_sample coordinates (x, y, z) = (I, J, K) in [-1, 1]."""
        k, j, i = self.shape_kji
        counts = np.array([i, j, k], dtype=float)
        scale = 2.0 / np.maximum(counts - 1, 1)
        ijk_to_grid = np.eye(4)
        ijk_to_grid[:3, :3] = np.diag(scale)
        ijk_to_grid[:3, 3] = -1.0
        return ijk_to_grid @ np.linalg.inv(np.asarray(self.ijk_to_ras, dtype=float))


@dataclass
class RayBatch:
    """``R`` rays in grid coordinates: ``origins``/``directions`` ``(R, 3)``, ``t`` range ``(R,)`` in mm.

    ``directions`` are grid units per mm (not unit vectors). Rays that miss the box have
    ``t_far <= t_near``.
    """

    origins: torch.Tensor
    directions: torch.Tensor
    t_near: torch.Tensor
    t_far: torch.Tensor

    def __len__(self) -> int:
        return self.origins.shape[0]

    def select(self, index: torch.Tensor | slice) -> "RayBatch":
        return RayBatch(self.origins[index], self.directions[index], self.t_near[index], self.t_far[index])

    def to(self, device=None, dtype=None) -> "RayBatch":
        return RayBatch(*(x.to(device=device, dtype=dtype) for x in
                          (self.origins, self.directions, self.t_near, self.t_far)))


def grid_rays(origins_ras: np.ndarray, directions_ras: np.ndarray, grid: VolumeGrid,
              dtype: torch.dtype = torch.float32) -> RayBatch:
    """Map RAS rays ``(..., 3)`` (unit directions, mm) into the grid frame and clip them to the box."""
    matrix = grid.ras_to_grid()
    origins = origins_ras.reshape(-1, 3) @ matrix[:3, :3].T + matrix[:3, 3]
    directions = directions_ras.reshape(-1, 3) @ matrix[:3, :3].T
    t_near, t_far = _clip_to_unit_box(origins, directions)
    to_tensor = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=dtype)  # noqa: E731
    return RayBatch(to_tensor(origins), to_tensor(directions), to_tensor(t_near), to_tensor(t_far))


def view_rays(view: CameraRecord, grid: VolumeGrid, width: int | None = None, height: int | None = None,
              dtype: torch.dtype = torch.float32) -> RayBatch:
    """Rays of every pixel of ``view`` (row-major from the top-left), at ``width`` x ``height``."""
    origins, directions = view.rays(width, height)
    return grid_rays(origins, directions, grid, dtype)


def _clip_to_unit_box(origins: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slab test against ``[-1, 1]^3``; ``t`` never starts behind the camera (``t_near >= 0``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse = 1.0 / directions
        t0 = (-1.0 - origins) * inverse
        t1 = (1.0 - origins) * inverse
    low, high = np.minimum(t0, t1), np.maximum(t0, t1)
    # A direction component of 0 gives +-inf (inside the slab) or nan (origin on a face): treat the
    # slab as unbounded when the origin is inside it, empty otherwise.
    parallel = directions == 0
    inside = np.abs(origins) <= 1.0
    low = np.where(parallel, np.where(inside, -np.inf, np.inf), low)
    high = np.where(parallel, np.where(inside, np.inf, -np.inf), high)
    t_near = np.maximum(low.max(axis=1), 0.0)
    t_far = high.min(axis=1)
    return t_near, np.where(np.isfinite(t_far), t_far, t_near)


def near_plane_distances(view: CameraRecord, near: float, width: int | None = None,
                         height: int | None = None) -> np.ndarray:
    """Distance (mm) along each pixel's ray to the plane ``near`` mm in front of the camera, ``(H * W,)``.

    VTK's CPU ray caster steps every ray from its near clipping plane, so its samples lie at whole
    steps from these distances.
    """
    _, directions = view.rays(width, height)
    if view.parallel_projection:
        return np.full(directions.shape[0] * directions.shape[1], float(near))
    forward = view.basis()[0]
    return float(near) / (directions.reshape(-1, 3) @ forward)
