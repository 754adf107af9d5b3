"""Dice, IoU, precision, recall over a set of slices, and false positives on negative slices.

Counts are pooled over all pixels of all slices (micro average): a negative slice has no Dice of
its own, and the paper's point is what models predict there. Empty denominators follow
:func:`vfmlab.metrics.segment_metrics`: 1 when prediction and truth are both empty, else 0. That
function is not called itself because it also computes HD95, which across a stack of unrelated
slices means nothing and costs more than the rest of an evaluation.
"""
from __future__ import annotations

import numpy as np
import torch
from monai.metrics import get_confusion_matrix


def segmentation_metrics(prediction: np.ndarray, truth: np.ndarray) -> dict[str, float | int | None]:
    """Boolean (N, H, W) prediction and truth → metrics dict (JSON-ready).

    ``fp_rate_negative``: fraction of negative slices (truth empty) with any predicted pixel; None
    when there is no negative slice. ``fp_pixels_negative``: mean predicted pixels on those slices.
    """
    prediction, truth = np.asarray(prediction, bool), np.asarray(truth, bool)
    if prediction.shape != truth.shape or prediction.ndim != 3:
        raise ValueError(f"prediction {prediction.shape} and truth {truth.shape} must both be (N, H, W)")
    counts = get_confusion_matrix(
        torch.from_numpy(prediction[:, None]).float(), torch.from_numpy(truth[:, None]).float()
    ).sum(dim=(0, 1))  # (tp, fp, tn, fn)
    tp, fp, _, fn = (float(v) for v in counts)
    both_empty = 1.0 if tp + fp + fn == 0 else 0.0

    def ratio(numerator: float, denominator: float) -> float:
        return float(numerator / denominator) if denominator > 0 else both_empty

    negative = ~truth.any(axis=(1, 2))
    predicted_on_negative = prediction[negative].sum(axis=(1, 2))
    return {
        "dice": ratio(2 * tp, 2 * tp + fp + fn),
        "iou": ratio(tp, tp + fp + fn),
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
        "slices": int(len(truth)),
        "negative_slices": int(negative.sum()),
        "fp_rate_negative": float((predicted_on_negative > 0).mean()) if negative.any() else None,
        "fp_pixels_negative": float(predicted_on_negative.mean()) if negative.any() else None,
    }
