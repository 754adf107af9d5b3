"""What every DeepDVR model shares: the volume it renders, render options, and rendering views.

A model renders camera views of one volume into ``(B, 3, H, W)`` images. Most models of Table 1 are
one DVR unit: build a field from the volume (identity, or a volume encoder), march every pixel's
ray through it, decode the composited channels into RGB (:class:`SingleFieldModel`); DVRNet runs one
DVR unit per encoder level (see :mod:`vfmlab.dvr.models.dvrnet`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ...cameras import CameraRecord
from ...volume import Volume
from ..geometry import RayBatch, VolumeGrid, near_plane_distances, view_rays
from ..marcher import Emission, MarchSettings, march, sample_offsets
from ..transfer_functions import ScalarDomain


@dataclass
class VolumeInput:
    """The volume as models see it: grid geometry, scalars mapped to ``u`` in [0, 1], and the background."""

    grid: VolumeGrid
    u: torch.Tensor  # (K, J, I)
    domain: ScalarDomain
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    _cell_bins: dict = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, volume: Volume, domain: ScalarDomain | None = None,
           background: Sequence[float] = (0.0, 0.0, 0.0), dtype: torch.dtype = torch.float32) -> "VolumeInput":
        domain = domain or ScalarDomain.of(volume.array)
        u = torch.as_tensor(domain.normalize(volume.array.astype(np.float64)), dtype=dtype)
        return cls(VolumeGrid.of(volume), u, domain, tuple(float(b) for b in background))

    def to(self, device) -> "VolumeInput":
        return VolumeInput(self.grid, self.u.to(device), self.domain, self.background)

    def cell_bin_ranges(self, bins: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Lowest and highest of ``bins`` TF bins that trilinear values inside each grid cell can reach."""
        if bins not in self._cell_bins:
            with torch.no_grad():
                u = self.u[None, None]
                low = -F.max_pool3d(-u, kernel_size=2, stride=1)[0, 0]
                high = F.max_pool3d(u, kernel_size=2, stride=1)[0, 0]
                self._cell_bins[bins] = (torch.floor(low * (bins - 1)).to(torch.int16),
                                         torch.ceil(high * (bins - 1)).clamp_(max=bins - 1).to(torch.int16))
        return self._cell_bins[bins]


@dataclass(frozen=True)
class RayLattice:
    """Where a renderer sampled each view's rays: at whole ``sample_distance`` steps (mm) from a plane
    ``near[v]`` mm in front of view ``v``'s camera (VTK's CPU ray caster: the near clipping plane)."""

    sample_distance: float
    near: tuple[float, ...]


@dataclass(frozen=True)
class RenderOptions:
    """Sampling of a render: ``Δt = d_v / sampling_rate`` (d_v: smallest voxel spacing) or a given
    ``sample_distance``, jitter, memory."""

    sampling_rate: float = 1.0
    sample_distance: float | None = None  # mm; overrides sampling_rate (level 0)
    jitter: bool = False
    chunk_steps: int = 32
    min_transmittance: float = 1e-3
    skip_empty: bool = True
    ray_batch: int = 1 << 16
    use_checkpoint: bool = True

    def march_settings(self, grid: VolumeGrid, emission: Emission, unit_distance: float,
                       level: int = 0) -> MarchSettings:
        """Settings for a DVR unit rendering at ``level`` (voxels and Δt ``2**level`` times larger)."""
        step = self.sample_distance or grid.voxel_size / self.sampling_rate
        return MarchSettings(step=step * 2**level, unit_distance=unit_distance,
                             emission=emission, jitter=self.jitter, chunk_steps=self.chunk_steps,
                             min_transmittance=self.min_transmittance, ray_batch=self.ray_batch,
                             use_checkpoint=self.use_checkpoint, skip_empty=self.skip_empty)


def batch_rays(views: Sequence[CameraRecord], grid: VolumeGrid, width: int, height: int, jitter: bool,
               seeds: Sequence[int] | None, dtype: torch.dtype, step: float | None = None,
               anchors: Sequence[float] | None = None) -> tuple[RayBatch, torch.Tensor]:
    """Rays of all views, view after view, and their sample offsets.

    With jitter and ``seeds``, each view's offsets come from its own seeded generator, so a view
    renders the same whichever process or batch renders it (data-parallel runs match single runs).
    Without jitter, ``anchors`` (a near-plane distance per view, see :class:`RayLattice`) put the
    samples where the captures' renderer put them: at whole ``step`` s from that plane.
    """
    parts = [view_rays(view, grid, width, height, dtype) for view in views]
    offsets = []
    for index, part in enumerate(parts):
        if not jitter and anchors is not None and step is not None:
            plane = near_plane_distances(views[index], anchors[index], width, height)
            offsets.append(torch.as_tensor(np.mod((plane - part.t_near.double().numpy()) / step, 1.0), dtype=dtype))
            continue
        generator = None
        if jitter and seeds is not None:
            generator = torch.Generator().manual_seed(int(seeds[index]))
        offsets.append(sample_offsets(len(part), jitter, generator, dtype))
    rays = RayBatch(*(torch.cat([getattr(p, name) for p in parts])
                      for name in ("origins", "directions", "t_near", "t_far")))
    return rays, torch.cat(offsets)


class DVRModel(nn.Module):
    """A differentiable volume renderer of one volume; subclasses set ``emission`` and implement :meth:`render`."""

    emission: Emission = "dt"

    def unit_distance(self, grid: VolumeGrid) -> float:
        """Distance (mm) that κ and emission are given per; deep models use the voxel size (paper)."""
        return grid.voxel_size

    def render(self, volume: VolumeInput, views: Sequence[CameraRecord], width: int, height: int,
               options: RenderOptions, seeds: Sequence[int] | None = None,
               anchors: Sequence[float] | None = None) -> torch.Tensor:
        """Images ``(B, 3, H, W)`` of ``views`` (B = len(views)); ``anchors``: see :func:`batch_rays`."""
        raise NotImplementedError

    def forward(self, volume, views, width, height, options, seeds=None, anchors=None) -> torch.Tensor:
        """Same as :meth:`render` (DistributedDataParallel synchronises gradients through ``forward``)."""
        return self.render(volume, views, width, height, options, seeds, anchors)


class SingleFieldModel(DVRModel):
    """One DVR unit: ``field(volume)`` → march → ``decode(color, alpha)``."""

    channels = 3

    def field(self, volume: VolumeInput):
        raise NotImplementedError

    def decode(self, color: torch.Tensor, alpha: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
        """Identity image decoder: RGB over the background, ``(R, 3)``."""
        return color + (1.0 - alpha).unsqueeze(1) * background

    def render(self, volume, views, width, height, options, seeds=None, anchors=None):
        field = self.field(volume)
        settings = options.march_settings(volume.grid, self.emission, self.unit_distance(volume.grid))
        rays, offsets = batch_rays(views, volume.grid, width, height, options.jitter, seeds, volume.u.dtype,
                                   settings.step, anchors)
        rays = rays.to(volume.u.device)
        composite = march(field, rays, settings, offsets.to(volume.u.device))
        background = torch.as_tensor(volume.background, dtype=volume.u.dtype, device=volume.u.device)
        rgb = self.decode(composite.color, composite.alpha, background)
        return rgb.view(len(views), height, width, 3).permute(0, 3, 1, 2)
