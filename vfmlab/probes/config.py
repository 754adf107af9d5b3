"""Settings of the attention probes, every default stated once (no torch: the command line, the probe job
and the panel read them from here)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProbeConfig:
    """``vfmlab probe`` and the ``probe`` job."""

    keep: float = 0.6  # DINO's threshold mode: the share of each head's attention mass kept (DINO's 0.6)
    input_size: int | None = None  # DINO/CLIP input size; None: the capture's own size
    tile: int = 128  # pixels per image in the report's grids


@dataclass(frozen=True)
class ThreeBallsConfig:
    """``vfmlab three-balls``: the colour-sensitivity scene."""

    size: int = 256  # rendered image size in pixels
    method: str = "cpu"  # ray casting
