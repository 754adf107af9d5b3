"""Fields the marcher samples: a scalar volume through a transfer function, or a feature volume.

Both sample trilinearly in grid coordinates with ``grid_sample`` (see :mod:`vfmlab.dvr.geometry`)
and classify after interpolation (post-classification), as VTK's ray casters do with a scalar.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .transfer_functions import scalar_tf_occupancy_table

OCCUPANCY_BINS = 1024


def sample_volume(volume: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Trilinear samples ``(N, C)`` of ``volume`` ``(1, C, K, J, I)`` at grid points ``(N, 3)``."""
    grid = points.view(1, 1, 1, -1, 3).to(volume.dtype)
    out = F.grid_sample(volume, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.view(volume.shape[1], -1).t()


class ScalarField(nn.Module):
    """A scalar volume, normalised to ``u`` in [0, 1], classified by a scalar TF (lookup or MLP).

    ``cell_bin_ranges(bins)`` gives, per grid cell, the lowest and highest TF bin its trilinear
    values reach (see :meth:`vfmlab.dvr.models.base.VolumeInput.cell_bin_ranges`, which caches them).
    """

    channels = 3

    def __init__(self, u_volume: torch.Tensor, tf: nn.Module, cell_bin_ranges):
        super().__init__()
        self.u_volume = u_volume.reshape(1, 1, *u_volume.shape[-3:])
        self.tf = tf
        self.cell_bin_ranges = cell_bin_ranges

    def classify(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.tf(sample_volume(self.u_volume, points)[:, 0])

    def occupancy(self, emission: str) -> torch.Tensor:
        """Cells whose corner values span a TF bin that absorbs (or, for emission "dt", emits)."""
        bins = getattr(self.tf, "entries", OCCUPANCY_BINS)
        with torch.no_grad():
            table = scalar_tf_occupancy_table(self.tf, bins, emission)
            low, high = self.cell_bin_ranges(bins)
            counts = torch.cat([table.new_zeros(1, dtype=torch.int32), torch.cumsum(table.to(torch.int32), 0)])
            return (counts[high.long() + 1] - counts[low.long()]) > 0


class FeatureField(nn.Module):
    """A feature volume ``(1, F, K, J, I)`` classified per sample by ``heads(features) -> (color, κ)``."""

    def __init__(self, features: torch.Tensor, heads: nn.Module, channels: int):
        super().__init__()
        self.features = features
        self.heads = heads
        self.channels = channels

    def classify(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.heads(sample_volume(self.features, points))

    def occupancy(self, emission: str) -> None:
        return None  # learned features: no cheap bound on where κ vanishes


class PreClassified(nn.Module):
    """Heads of a pre-classified volume: its channels already are (emission..., κ)."""

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return features[:, :-1], features[:, -1]


class MLPHeads(nn.Module):
    """The paper's MLP TFs on ``F`` features: κ from ``F → hidden → 1``; colour from ``F → hidden → 3``
    (VNETL16-4) or the features themselves as latent colour (VNETL16-17, DVRNet: ``color=False``).

    Both end in a sigmoid, as in the paper: κ in (0, 1) per unit distance (the voxel size for these
    models), so a homogeneous region composites to ``c / κ >= c`` and bright opaque surfaces stay
    reachable with emission "dt".
    """

    def __init__(self, features: int, hidden: int = 16, color: bool = True):
        super().__init__()
        self.opacity = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.color = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, 3)) if color else None

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kappa = torch.sigmoid(self.opacity(features)[:, 0])
        color = torch.sigmoid(self.color(features)) if self.color is not None else features
        return color, kappa
