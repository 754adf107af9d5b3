"""Segmentation metrics per segment against a reference: Dice, IoU, precision, recall, HD95.

Counts come from monai's confusion-matrix helpers and the surface distance from monai's Hausdorff
metric, computed in millimetres with the voxel spacing.
"""
from __future__ import annotations

import numpy as np

from .errors import InputError


def _as_batch(mask: np.ndarray):
    import torch

    return torch.as_tensor(np.ascontiguousarray(mask), dtype=torch.float32)[None, None]


def overlap_metrics(prediction: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Dice, IoU, precision, recall and voxel counts of one binary mask against its reference (same shape).

    Dice of two empty masks is 1 (nothing to find, nothing found).
    """
    from monai.metrics import get_confusion_matrix

    prediction, reference = np.asarray(prediction, bool), np.asarray(reference, bool)
    if prediction.shape != reference.shape:
        raise InputError(f"prediction {prediction.shape} and reference {reference.shape} differ in shape")
    tp, fp, tn, fn = get_confusion_matrix(_as_batch(prediction), _as_batch(reference), include_background=True)[0, 0].tolist()

    def ratio(numerator: float, denominator: float, empty: float) -> float:
        return numerator / denominator if denominator else empty

    both_empty = 1.0 if not prediction.any() and not reference.any() else 0.0
    return {
        "dice": ratio(2 * tp, 2 * tp + fp + fn, both_empty),
        "iou": ratio(tp, tp + fp + fn, both_empty),
        "precision": ratio(tp, tp + fp, both_empty),
        "recall": ratio(tp, tp + fn, both_empty),
        "predicted_voxels": int(tp + fp),
        "reference_voxels": int(tp + fn),
    }


def segment_metrics(prediction: np.ndarray, reference: np.ndarray, spacing=None) -> dict[str, float]:
    """:func:`overlap_metrics` plus HD95 in mm (spacing in array axis order; 2D or 3D).

    HD95 is ``nan`` when either mask is empty (the distance is undefined).
    """
    from monai.metrics import compute_hausdorff_distance

    metrics = overlap_metrics(prediction, reference)
    metrics["hd95_mm"] = float("nan")
    if metrics["predicted_voxels"] and metrics["reference_voxels"]:
        distance = compute_hausdorff_distance(_as_batch(prediction), _as_batch(reference), include_background=True,
                                              percentile=95, spacing=None if spacing is None else list(spacing))
        metrics["hd95_mm"] = float(distance.item())
    return metrics


def metrics_table(predictions: dict[str, np.ndarray], references: dict[str, np.ndarray], spacing=None) -> list[dict]:
    """One row per segment name present in both dicts: ``{"segment": name, **segment_metrics}``."""
    names = [name for name in references if name in predictions]
    if not names:
        raise InputError(f"no segment names in common: predicted {sorted(predictions)}, reference {sorted(references)}")
    return [{"segment": name, **segment_metrics(predictions[name], references[name], spacing)} for name in names]
