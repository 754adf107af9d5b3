"""Dice, IoU, precision, recall over a set of slices, and false positives on negative slices.

Counts are pooled over all pixels of all slices (micro average, :func:`vfmlab.metrics.overlap_metrics`):
a negative slice has no Dice of its own, and the paper's point is what models predict there. HD95 is
left out: across a stack of unrelated slices it means nothing and costs more than the rest.
"""
from __future__ import annotations

import numpy as np

from vfmlab.metrics import overlap_metrics


def slice_stack_metrics(prediction: np.ndarray, truth: np.ndarray) -> dict[str, float | int | None]:
    """Boolean (N, H, W) prediction and truth → metrics dict (JSON-ready).

    ``fp_rate_negative``: fraction of negative slices (truth empty) with any predicted pixel; None
    when there is no negative slice. ``fp_pixels_negative``: mean predicted pixels on those slices.
    """
    prediction, truth = np.asarray(prediction, bool), np.asarray(truth, bool)
    if prediction.shape != truth.shape or prediction.ndim != 3:
        raise ValueError(f"prediction {prediction.shape} and truth {truth.shape} must both be (N, H, W)")
    overlap = overlap_metrics(prediction, truth)
    negative = ~truth.any(axis=(1, 2))
    predicted_on_negative = prediction[negative].sum(axis=(1, 2))
    return {
        **{key: overlap[key] for key in ("dice", "iou", "precision", "recall")},
        "slices": int(len(truth)),
        "negative_slices": int(negative.sum()),
        "fp_rate_negative": float((predicted_on_negative > 0).mean()) if negative.any() else None,
        "fp_pixels_negative": float(predicted_on_negative.mean()) if negative.any() else None,
    }
