"""Segmentation metrics against a reference: Dice, IoU, precision, recall, HD95. The project's one Dice.

Overlap counts are numpy (cheap enough to call per slice inside propagation); the surface distance is
monai's Hausdorff metric, in millimetres with the voxel spacing.
"""
from __future__ import annotations

import numpy as np

from .errors import InputError


def _as_batch(mask: np.ndarray):
    import torch

    return torch.as_tensor(np.ascontiguousarray(mask), dtype=torch.float32)[None, None]


def _counts(prediction: np.ndarray, reference: np.ndarray) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of two boolean masks of one shape."""
    prediction, reference = np.asarray(prediction, bool), np.asarray(reference, bool)
    if prediction.shape != reference.shape:
        raise InputError(f"prediction {prediction.shape} and reference {reference.shape} differ in shape")
    tp = int(np.count_nonzero(prediction & reference))
    return tp, int(np.count_nonzero(prediction)) - tp, int(np.count_nonzero(reference)) - tp


def dice(prediction: np.ndarray, reference: np.ndarray) -> float:
    """Dice of two boolean masks of one shape; 1 when both are empty (nothing to find, nothing found)."""
    tp, fp, fn = _counts(prediction, reference)
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0


def overlap_metrics(prediction: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Dice, IoU, precision, recall and voxel counts of one binary mask against its reference (same shape).

    Counts are pooled over the whole array (a stack of slices is scored as one volume). Every ratio
    with an empty denominator is 1 when both masks are empty, else 0.
    """
    tp, fp, fn = _counts(prediction, reference)

    def ratio(numerator: float, denominator: float) -> float:
        return numerator / denominator if denominator else (0.0 if tp + fp + fn else 1.0)

    return {
        "dice": ratio(2 * tp, 2 * tp + fp + fn),
        "iou": ratio(tp, tp + fp + fn),
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
        "predicted_voxels": tp + fp,
        "reference_voxels": tp + fn,
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
