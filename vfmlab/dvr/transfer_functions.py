"""Learnable transfer functions of a scalar (lookup and MLP); Slicer's points are in :mod:`.piecewise_tf`.

All use VTK's meaning of opacity: ``α`` is the opacity of a slab one scalar-opacity unit distance
thick, so ``κ = -ln(1 - α)`` per unit distance (see :mod:`vfmlab.dvr.marcher`). Colours are in
[0, 1], as in a ``vtkColorTransferFunction``.

Learnable TFs take the scalar already mapped to ``u`` in [0, 1] over a :class:`ScalarDomain`
(clamped outside, as VTK's transfer functions clamp), and return colour ``(N, 3)`` and κ ``(N,)``.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .piecewise_tf import MAX_OPACITY, PiecewiseTF, ScalarDomain

__all__ = ["LookupTF", "MLPTF", "PiecewiseTF", "ScalarDomain", "kappa_from_opacity", "scalar_tf_occupancy_table"]


def kappa_from_opacity(alpha: torch.Tensor) -> torch.Tensor:
    """κ per unit distance of an opacity per unit distance."""
    return -torch.log1p(-alpha.clamp(0.0, MAX_OPACITY))


def _inverse_sigmoid(p: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    p = np.clip(p, eps, 1 - eps)
    return np.log(p / (1 - p))


class LookupTF(nn.Module):
    """Table of ``entries`` RGB and opacity values, linear between entries (paper: "Lookup TF", ~1 K params).

    Entries are stored as logits so colour and opacity stay in [0, 1]; interpolation happens after
    the sigmoid, on colour and opacity themselves, exactly as VTK interpolates its TF points.
    """

    def __init__(self, entries: int = 256, initial_opacity: float = 0.05, initial_color: float = 0.5):
        super().__init__()
        self.entries = entries
        self.color_logits = nn.Parameter(torch.full((entries, 3), float(_inverse_sigmoid(np.array(initial_color)))))
        self.opacity_logits = nn.Parameter(torch.full((entries,), float(_inverse_sigmoid(np.array(initial_opacity)))))

    def table(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Colour ``(entries, 3)`` and opacity per unit distance ``(entries,)``."""
        return torch.sigmoid(self.color_logits), torch.sigmoid(self.opacity_logits)

    def load_table(self, colors: np.ndarray, opacities: np.ndarray) -> None:
        """Set the entries (e.g. from a Slicer preset evaluated at the entry positions)."""
        with torch.no_grad():
            self.color_logits.copy_(torch.as_tensor(_inverse_sigmoid(np.asarray(colors), 1e-7)))
            self.opacity_logits.copy_(torch.as_tensor(_inverse_sigmoid(np.asarray(opacities), 1e-7)))

    def forward(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        colors, opacities = self.table()
        table = torch.cat([colors, opacities.unsqueeze(1)], dim=1)
        position = u.clamp(0.0, 1.0) * (self.entries - 1)
        low = position.detach().floor().clamp_(max=self.entries - 2).to(torch.int64)
        weight = (position - low).unsqueeze(1)
        value = torch.lerp(table.index_select(0, low), table.index_select(0, low + 1), weight)
        return value[:, :3], kappa_from_opacity(value[:, 3])


class MLPTF(nn.Module):
    """TF as an MLP of the scalar (paper: two hidden layers, similar parameter count as the lookup)."""

    def __init__(self, hidden: int = 32, layers: int = 2):
        super().__init__()
        widths = [1] + [hidden] * layers
        blocks: list[nn.Module] = []
        for w_in, w_out in zip(widths[:-1], widths[1:]):
            blocks += [nn.Linear(w_in, w_out), nn.ReLU()]
        self.body = nn.Sequential(*blocks, nn.Linear(widths[-1], 4))
        with torch.no_grad():  # start almost transparent, like the lookup's initial table
            self.body[-1].bias[3] = float(_inverse_sigmoid(np.array(0.05)))

    def forward(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.body((u.clamp(0.0, 1.0) * 2 - 1).unsqueeze(1))
        return torch.sigmoid(out[:, :3]), kappa_from_opacity(torch.sigmoid(out[:, 3]))


def scalar_tf_occupancy_table(tf: nn.Module, bins: int, emission: str) -> torch.Tensor:
    """Per bin of ``u`` over [0, 1], whether the TF may absorb (or, for emission "dt", emit) there.

    For the lookup the bins are its entries; an MLP is sampled densely and each bin widened by its
    neighbours (an MLP has no entries: a narrow peak between samples could otherwise be missed).
    """
    u = torch.linspace(0.0, 1.0, bins, dtype=next(tf.parameters()).dtype)
    color, kappa = tf(u)
    matters = kappa > 1e-6 if emission == "alpha" else (kappa > 1e-6) | (color.amax(dim=1) > 1e-6)
    if not isinstance(tf, LookupTF):
        matters = F.max_pool1d(matters.float()[None, None], 3, stride=1, padding=1)[0, 0] > 0
    return matters
