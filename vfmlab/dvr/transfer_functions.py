"""Transfer functions of a scalar: Slicer's piecewise-linear points, and the learnable lookup and MLP TFs.

All use VTK's meaning of opacity: ``α`` is the opacity of a slab one scalar-opacity unit distance
thick, so ``κ = -ln(1 - α)`` per unit distance (see :mod:`vfmlab.dvr.marcher`). Colours are in
[0, 1], as in a ``vtkColorTransferFunction``.

Learnable TFs take the scalar already mapped to ``u`` in [0, 1] over a :class:`ScalarDomain`
(clamped outside, as VTK's transfer functions clamp), and return colour ``(N, 3)`` and κ ``(N,)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import InputError

MAX_OPACITY = 1.0 - 1e-6  # α = 1 is an infinite κ; VTK's fixed-point tables cannot tell the difference


def kappa_from_opacity(alpha: torch.Tensor) -> torch.Tensor:
    """κ per unit distance of an opacity per unit distance."""
    return -torch.log1p(-alpha.clamp(0.0, MAX_OPACITY))


@dataclass(frozen=True)
class ScalarDomain:
    """The scalar range a TF spans: ``u = (value - low) / (high - low)``, clamped to [0, 1]."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not self.high > self.low:
            raise InputError(f"a transfer-function domain needs high > low, got [{self.low}, {self.high}]")

    @classmethod
    def of(cls, values: np.ndarray) -> "ScalarDomain":
        low, high = float(np.min(values)), float(np.max(values))
        return cls(low, high if high > low else low + 1.0)

    def normalize(self, values):
        return ((values - self.low) / (self.high - self.low)).clip(0.0, 1.0)

    def values(self, count: int) -> np.ndarray:
        """``count`` evenly spaced scalar values from low to high (where lookup entries sit)."""
        return np.linspace(self.low, self.high, count)


@dataclass
class PiecewiseTF:
    """Slicer/VTK transfer function: colour points ``(x, r, g, b)`` and scalar opacity points ``(x, α)``."""

    color: np.ndarray  # (P, 4)
    opacity: np.ndarray  # (Q, 2)
    unit_distance: float = 1.0  # vtkVolumeProperty's scalar opacity unit distance, mm

    def __post_init__(self) -> None:
        self.color = np.asarray(self.color, dtype=float).reshape(-1, 4)
        self.opacity = np.asarray(self.opacity, dtype=float).reshape(-1, 2)
        if len(self.color) == 0 or len(self.opacity) == 0:
            raise InputError("a transfer function needs at least one colour and one opacity point")
        self.color = self.color[np.argsort(self.color[:, 0], kind="stable")]
        self.opacity = self.opacity[np.argsort(self.opacity[:, 0], kind="stable")]

    @classmethod
    def from_slicer_strings(cls, color_transfer: str, scalar_opacity: str, shift: float = 0.0,
                            unit_distance: float = 1.0) -> "PiecewiseTF":
        """From a Slicer volume property's ``colorTransfer``/``scalarOpacity`` strings (``"N x1 y1 ..."``).

        ``shift`` moves every point along the scalar axis, as Slicer's preset "Shift" slider does.
        """
        color = _parse_points(color_transfer, 4, "colorTransfer")
        opacity = _parse_points(scalar_opacity, 2, "scalarOpacity")
        color[:, 0] += shift
        opacity[:, 0] += shift
        return cls(color, opacity, unit_distance)

    @classmethod
    def from_dict(cls, data: dict) -> "PiecewiseTF":
        """From a capture's ``transfer_function`` record.

        Accepts point lists (``color`` ``[[x, r, g, b], ...]``, ``scalar_opacity`` ``[[x, a], ...]``)
        or Slicer's strings (``colorTransfer``, ``scalarOpacity``); ``shift`` and
        ``scalar_opacity_unit_distance`` (or ``unit_distance``) are optional.
        """
        shift = float(data.get("shift", 0.0))
        unit = float(data.get("scalar_opacity_unit_distance", data.get("unit_distance", 1.0)))
        if "colorTransfer" in data and "scalarOpacity" in data:
            return cls.from_slicer_strings(data["colorTransfer"], data["scalarOpacity"], shift, unit)
        if "color" in data and "scalar_opacity" in data:
            color = np.asarray(data["color"], dtype=float).reshape(-1, 4).copy()
            opacity = np.asarray(data["scalar_opacity"], dtype=float).reshape(-1, 2).copy()
            color[:, 0] += shift
            opacity[:, 0] += shift
            return cls(color, opacity, unit)
        raise InputError("the transfer function record has neither colour/opacity points nor Slicer strings "
                         f"(keys: {sorted(data)})")

    def to_dict(self) -> dict:
        return {"color": self.color.tolist(), "scalar_opacity": self.opacity.tolist(),
                "scalar_opacity_unit_distance": self.unit_distance}

    def evaluate(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Colour ``(N, 3)`` and opacity ``(N,)`` at scalar ``values``, linear between points, clamped outside."""
        values = np.asarray(values, dtype=float)
        rgb = np.stack([np.interp(values, self.color[:, 0], self.color[:, c]) for c in (1, 2, 3)], axis=-1)
        return rgb, np.interp(values, self.opacity[:, 0], self.opacity[:, 1])

    def at_unit_distance(self, unit_distance: float) -> "PiecewiseTF":
        """The same TF with opacities per ``unit_distance`` mm: ``α' = 1 - (1 - α)^(d'/d)``.

        Exact at the points; between them the linear interpolation of ``α'`` differs slightly from the
        converted interpolation of ``α`` (negligible for a 256-entry lookup table).
        """
        if unit_distance <= 0:
            raise InputError(f"the scalar opacity unit distance must be positive, not {unit_distance}")
        alpha = np.clip(self.opacity[:, 1], 0.0, MAX_OPACITY)
        converted = 1.0 - (1.0 - alpha) ** (unit_distance / self.unit_distance)
        return PiecewiseTF(self.color, np.column_stack([self.opacity[:, 0], converted]), unit_distance)

    @classmethod
    def from_table(cls, colors: np.ndarray, opacities: np.ndarray, domain: ScalarDomain,
                   unit_distance: float = 1.0) -> "PiecewiseTF":
        """The points of a lookup table whose entries sit evenly from ``domain.low`` to ``domain.high``."""
        x = domain.values(len(colors))
        return cls(np.column_stack([x, colors]), np.column_stack([x, opacities]), unit_distance)


def _parse_points(text: str, width: int, what: str) -> np.ndarray:
    try:
        numbers = [float(v) for v in str(text).split()]
    except ValueError:
        raise InputError(f"{what} is not a list of numbers: {str(text)[:80]!r}") from None
    if not numbers or int(numbers[0]) != len(numbers) - 1 or (len(numbers) - 1) % width:
        raise InputError(f"{what} must be 'N' followed by N numbers, {width} per point: {str(text)[:80]!r}")
    return np.asarray(numbers[1:]).reshape(-1, width)


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
