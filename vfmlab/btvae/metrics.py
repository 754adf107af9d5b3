"""Dice, IoU, precision, recall on the slices that show the structure, and false positives on those that do not.

Overlap counts are pooled over all pixels of the positive slices (micro average,
:func:`vfmlab.metrics.overlap_metrics`). A negative slice has no Dice of its own; what a model predicts
there, the source's point, is reported apart: the share of negative slices with any predicted pixel
and the mean predicted pixels on them. HD95 is left out: across a stack of unrelated slices it means
nothing and costs more than the rest.
"""
from __future__ import annotations

import numpy as np

from vfmlab.metrics import overlap_metrics


def slice_stack_metrics(prediction: np.ndarray, truth: np.ndarray) -> dict[str, float | int | None]:
    """Boolean (N, H, W) prediction and truth → metrics dict (JSON-ready).

    ``dice``, ``iou``, ``precision``, ``recall``: over the positive slices (truth not empty; None when
    there is none). ``fp_rate``: fraction of negative slices (truth empty) with any predicted pixel;
    ``fp_pixels``: mean predicted pixels on them; both None when there is no negative slice.
    """
    prediction, truth = np.asarray(prediction, bool), np.asarray(truth, bool)
    if prediction.shape != truth.shape or prediction.ndim != 3:
        raise ValueError(f"prediction {prediction.shape} and truth {truth.shape} must both be (N, H, W)")
    negative = ~truth.any(axis=(1, 2))
    overlap = overlap_metrics(prediction[~negative], truth[~negative]) if (~negative).any() else {}
    predicted_on_negative = prediction[negative].sum(axis=(1, 2))
    return {
        **{key: overlap.get(key) for key in ("dice", "iou", "precision", "recall")},
        "slices": int(len(truth)),
        "negative_slices": int(negative.sum()),
        "fp_rate": float((predicted_on_negative > 0).mean()) if negative.any() else None,
        "fp_pixels": float(predicted_on_negative.mean()) if negative.any() else None,
    }
