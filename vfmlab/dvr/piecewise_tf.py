"""Transfer functions as Slicer/VTK keeps them (colour and opacity points) and the scalar domain a TF spans.

numpy only, so that Slicer-side code and the model server's clients read and write TFs without torch;
the learnable TFs (:mod:`.transfer_functions`) convert to and from these.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError

MAX_OPACITY = 1.0 - 1e-6  # α = 1 is an infinite κ; VTK's fixed-point tables cannot tell the difference


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


