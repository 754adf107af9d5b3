"""Settings of key-slice selection, every default stated once (no torch: the command line, the evaluation
and the panel read them from here)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from ..errors import InputError

COMPONENTS = ("attention", "novelty", "foreground", "contrast", "segment")


@dataclass(frozen=True)
class ScoreWeights:
    """Weights of a slice's importance components (each scaled to [0, 1] over the volume's slices first).

    ``attention``: how concentrated the encoder's attention is (1 - its normalised entropy, mean over heads);
    ``novelty``: how much the slice's encoder features differ from its neighbours' (1 - cosine similarity);
    ``foreground``: share of the slice inside the body; ``contrast``: spread of the windowed intensities
    inside the body; ``segment``: share of the slice covered by a given segmentation (0 without one).
    """

    attention: float = 1.0
    novelty: float = 1.0
    foreground: float = 1.0
    contrast: float = 0.5
    segment: float = 2.0

    def as_dict(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in COMPONENTS}


@dataclass(frozen=True)
class KeySliceConfig:
    """``vfmlab slices``: which encoder scores the slices, and how many and which slices are kept."""

    model: str = "litemedsam"  # a probe of the model catalogue (its encoder's attention and features)
    axis: str = "axial"
    ratio: float = 0.3  # share of the slices kept (the source's 0.3-0.5)
    budget: int | None = None  # a number of slices instead of a ratio
    mode: Literal["diverse", "contiguous"] = "diverse"  # contiguous: one run of neighbouring slices
    diversity: float = 0.5  # weight of the penalty for resembling an already chosen slice (maximal marginal relevance)
    # chosen slices lie at least this share of the even spacing (slices / count) apart: thin slices next to
    # each other show nearly the same anatomy, and their encoder features alone do not always say so
    min_spacing: float = 0.5
    foreground_level: float = 0.05  # windowed intensity (0..1) above which a pixel is inside the body
    cover_distance: int = 2  # a slice counts as covered when a chosen slice is at most this many slices away
    weights: ScoreWeights = field(default_factory=ScoreWeights)

    def __post_init__(self) -> None:
        """Checked here, so the CLI, the job task and the panel refuse the same settings with one message."""
        if not 0 < self.ratio <= 1:
            raise InputError(f"the ratio must be in (0, 1], got {self.ratio}")
        if self.budget is not None and self.budget < 1:
            raise InputError(f"the budget must be at least 1 slice, got {self.budget}")
        if self.mode not in ("diverse", "contiguous"):
            raise InputError(f"unknown selection mode '{self.mode}'; use diverse or contiguous")
        if self.axis not in ("axial", "coronal", "sagittal"):
            raise InputError(f"unknown axis '{self.axis}'; use axial, coronal or sagittal")

    def min_gap(self, slices: int) -> int:
        """Fewest slices between two chosen ones (1: neighbours allowed)."""
        return max(1, math.ceil(self.min_spacing * slices / self.count(slices)))

    def count(self, slices: int) -> int:
        """How many of ``slices`` slices to keep: the budget, else ``round(ratio x slices)``, at least one."""
        wanted = self.budget if self.budget is not None else round(self.ratio * slices)
        return int(min(max(wanted, 1), slices))
