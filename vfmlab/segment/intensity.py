"""Intensity normalisation of slices before a 2D segmenter sees them.

CT uses a fixed HU window (how MedSAM and LiteMedSAM were trained), MR and other modalities a
percentile clip of the whole volume, so that every slice of one volume is scaled alike and a
propagated mask does not jump when a slice's own range changes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# (level, width) in HU
CT_WINDOWS = {
    "abdomen": (40.0, 400.0),
    "soft-tissue": (50.0, 350.0),
    "liver": (60.0, 160.0),
    "bone": (400.0, 1800.0),
    "lung": (-600.0, 1500.0),
    "brain": (40.0, 80.0),
}


@dataclass(frozen=True)
class IntensityWindow:
    """Maps raw voxel values linearly to [0, 1] between ``low`` and ``high``, clipping outside."""

    low: float
    high: float

    @classmethod
    def ct(cls, preset: str = "abdomen") -> "IntensityWindow":
        if preset not in CT_WINDOWS:
            raise ValueError(f"unknown CT window '{preset}'; known: {', '.join(CT_WINDOWS)}")
        level, width = CT_WINDOWS[preset]
        return cls(level - width / 2, level + width / 2)

    @classmethod
    def percentile(cls, volume: np.ndarray, low: float = 0.5, high: float = 99.5) -> "IntensityWindow":
        """Window from the volume's own percentiles (MR, ultrasound, unknown modalities)."""
        finite = volume[np.isfinite(volume)]
        lo, hi = np.percentile(finite, [low, high]) if finite.size else (0.0, 1.0)
        return cls(float(lo), float(hi if hi > lo else lo + 1.0))

    @classmethod
    def for_modality(cls, volume: np.ndarray, modality: str = "auto", ct_preset: str = "abdomen") -> "IntensityWindow":
        """``ct``, ``mr`` (or anything else: percentile) or ``auto`` (CT when the values look like HU)."""
        if modality == "auto":
            low, high = np.percentile(volume, [1, 99])
            modality = "ct" if low < -500 and high < 4000 else "other"
        return cls.ct(ct_preset) if modality == "ct" else cls.percentile(volume)

    def apply(self, image: np.ndarray) -> np.ndarray:
        return np.clip((image.astype(np.float32) - self.low) / (self.high - self.low), 0.0, 1.0)
