"""How a volume is rendered for captures: every default stated once (the command line reads it from here)."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError
from .presets import check_preset


@dataclass(frozen=True)
class RenderSettings:
    """How to render: a Slicer preset (or a TF record), its shift, ray caster, image size, background, shading."""

    preset: str | None = "CT-AAA"  # None: ``transfer_function`` if given, else the node's current property
    shift: float = 0.0  # scalar offset of the colour and opacity points (Slicer's "Shift")
    method: str = "cpu"  # "cpu" or "gpu" ray casting
    width: int = 512
    height: int = 512
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    shading: bool | None = None  # None: the preset's own setting
    transfer_function: dict | None = None

    def __post_init__(self) -> None:
        if self.preset is not None:
            check_preset(self.preset)
        if self.method not in ("cpu", "gpu"):
            raise InputError(f"ray casting must be 'cpu' or 'gpu', got '{self.method}'")
        if not (16 <= self.width <= 4096 and 16 <= self.height <= 4096):
            raise InputError(f"image size must be 16..4096 pixels per side, got {self.width}x{self.height}")


LABEL_MODES = ("visible", "first")
