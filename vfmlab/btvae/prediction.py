"""A BT-VAE prediction on a volume's grid, and its files: what a prediction job hands back to Slicer.

numpy and SimpleITK only: the job process predicts with torch, the Slicer side reads the files.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vfmlab.volume import Volume

PROBABILITY_FILE, VARIANCE_FILE, SUMMARY_FILE = "probability.nrrd", "variance.nrrd", "prediction.json"


@dataclass
class VolumePrediction:
    """On the volume's (K, J, I) grid: mean probability, mask (probability ≥ 0.5), variance over z samples."""

    probability: np.ndarray
    mask: np.ndarray
    variance: np.ndarray
    probabilistic: bool
    samples: int

    def save(self, folder: str | Path, volume: Volume, **summary) -> Path:
        """Write the probability and variance maps on ``volume``'s grid, and a summary (plus ``summary``)."""
        from vfmlab.atomic import write_json
        from vfmlab.volume_io import write_volume

        folder = Path(folder)
        write_volume(volume.with_array(self.probability.astype(np.float32)), folder / PROBABILITY_FILE)
        write_volume(volume.with_array(self.variance.astype(np.float32)), folder / VARIANCE_FILE)
        write_json(folder / SUMMARY_FILE, {**summary, "probabilistic": self.probabilistic, "samples": self.samples})
        return folder

    @classmethod
    def load(cls, folder: str | Path, volume: Volume) -> tuple["VolumePrediction", dict]:
        """The prediction a job wrote into ``folder``, on ``volume``'s grid (refused on another), and its summary."""
        from vfmlab.volume_io import read_volume

        folder = Path(folder)
        summary = json.loads((folder / SUMMARY_FILE).read_text(encoding="utf-8"))
        probability = read_volume(folder / PROBABILITY_FILE).array_on_grid(volume.ijk_to_ras, volume.array.shape)
        variance = read_volume(folder / VARIANCE_FILE).array_on_grid(volume.ijk_to_ras, volume.array.shape)
        prediction = cls(probability, probability >= 0.5, variance, bool(summary["probabilistic"]),
                         int(summary["samples"]))
        return prediction, summary
