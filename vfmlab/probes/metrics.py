"""Numbers for the paper's comparison: does a head's attention pick out a segment, and does it follow colour?

- per head and segment, the AUROC of the head's attention as a score for "this cell belongs to the
  segment" against every other cell (segment-ID image of the capture, cells = the model's map grid);
- per head, its best segment and the entropy of its attention (1 = spread evenly, 0 = one cell);
- per model, how many heads specialise (best AUROC >= a threshold) and on how many distinct segments;
- colour sensitivity: how much each head's map changes when only the transfer function's colours change.

AUROC is the rank statistic ``monai.metrics.compute_roc_auc`` computes, vectorised over segments
(see :func:`segment_aurocs`; scikit-learn is not a dependency).
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from ..errors import InputError

SPECIALISED_AUROC = 0.8


def cell_labels(labels: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """``(h, w)``: per map cell, the label covering most of its pixels (0 = background counts as a label)."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise InputError(f"a segment-ID image must be (H, W), got shape {labels.shape}")
    height, width = labels.shape
    h, w = grid
    rows = np.minimum(((np.arange(height) + 0.5) * h / height).astype(int), h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * w / width).astype(int), w - 1)
    cell = (rows[:, None] * w + cols[None, :]).ravel()
    values, codes = np.unique(labels.ravel(), return_inverse=True)
    counts = np.zeros((h * w, len(values)), np.int64)
    np.add.at(counts, (cell, codes), 1)
    return values[counts.argmax(axis=1)].reshape(h, w)


def segment_aurocs(maps: np.ndarray, cells: np.ndarray, min_cells: int = 2) -> dict[int, np.ndarray]:
    """Label → ``(n_heads,)`` AUROC of each head's map for that segment's cells against all other cells.

    AUROC = the Mann-Whitney rank statistic (ties share their mean rank, i.e. count one half), the same
    number ``monai.metrics.compute_roc_auc`` gives (tests check they agree). monai loops in Python over
    every cell (~17 ms for a 64 x 64 grid), and a model's table needs heads x segments x views of them,
    so here each head's cells are ranked once and every segment's AUROC read from its rank sum.
    Segments covering fewer than ``min_cells`` cells (or all of them) are left out: their AUROC says nothing.
    """
    from scipy.stats import rankdata

    maps = np.asarray(maps, dtype=np.float64)
    if maps.shape[1:] != cells.shape:
        raise InputError(f"maps of grid {maps.shape[1:]} and segment cells of grid {cells.shape} differ")
    values, codes, counts = np.unique(cells.ravel(), return_inverse=True, return_counts=True)
    total = codes.size
    ranks = rankdata(maps.reshape(len(maps), -1), axis=1)  # (heads, cells), 1-based, ties averaged
    rank_sums = np.stack([np.bincount(codes, weights=head_ranks, minlength=len(values)) for head_ranks in ranks])
    result = {}
    for index, (label, positives) in enumerate(zip(values, counts)):
        if label == 0 or positives < min_cells or positives == total:
            continue
        u = rank_sums[:, index] - positives * (positives + 1) / 2
        result[int(label)] = u / (positives * (total - positives))
    return result


def attention_entropy(maps: np.ndarray) -> np.ndarray:
    """``(n_heads,)`` entropy of each map as a distribution over cells, divided by its maximum ``log(cells)``."""
    maps = np.clip(np.asarray(maps, dtype=np.float64).reshape(len(maps), -1), 0, None)
    p = maps / np.maximum(maps.sum(axis=1, keepdims=True), 1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
    return entropy / np.log(maps.shape[1]) if maps.shape[1] > 1 else np.zeros(len(maps))


def colour_sensitivity(maps_a: np.ndarray, maps_b: np.ndarray) -> np.ndarray:
    """``(n_heads,)`` total-variation distance between each head's attention in two renders (0 same, 1 disjoint)."""
    a = np.clip(np.asarray(maps_a, dtype=np.float64).reshape(len(maps_a), -1), 0, None)
    b = np.clip(np.asarray(maps_b, dtype=np.float64).reshape(len(maps_b), -1), 0, None)
    if a.shape != b.shape:
        raise InputError(f"attention maps of shapes {np.shape(maps_a)} and {np.shape(maps_b)} cannot be compared")
    a /= np.maximum(a.sum(axis=1, keepdims=True), 1e-12)
    b /= np.maximum(b.sum(axis=1, keepdims=True), 1e-12)
    return 0.5 * np.abs(a - b).sum(axis=1)


def auroc_rows(model: str, view: str, aurocs: dict[int, np.ndarray], cells: np.ndarray,
               names: dict[int, str]) -> list[dict]:
    """One row per head and segment, as ``metrics.csv`` stores them."""
    counts = dict(zip(*np.unique(cells, return_counts=True)))
    return [{"model": model, "view": view, "head": head, "label": label, "segment": names.get(label, f"Label {label}"),
             "cells": int(counts[label]), "auroc": float(values[head])}
            for label, values in sorted(aurocs.items()) for head in range(len(values))]


def head_table(rows: list[dict], entropies: dict[int, list[float]], names: dict[int, str]) -> list[dict]:
    """Per head of one model: AUROC per segment averaged over views, the best segment, the mean entropy."""
    per_head: dict[int, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if np.isfinite(row["auroc"]):
            per_head[row["head"]][row["label"]].append(row["auroc"])
    table = []
    for head in sorted(entropies):
        means = {label: float(np.mean(values)) for label, values in per_head.get(head, {}).items()}
        best = max(means, key=means.get) if means else None
        table.append({
            "head": head,
            "best_label": best,
            "best_segment": names.get(best, f"Label {best}") if best is not None else None,
            "best_auroc": means[best] if best is not None else None,
            "entropy": float(np.mean(entropies[head])),
        })
    return table


def model_summary(table: list[dict], threshold: float = SPECIALISED_AUROC) -> dict:
    """How many heads specialise (best AUROC >= ``threshold``) and to how many distinct segments."""
    specialised = [row for row in table if row["best_auroc"] is not None and row["best_auroc"] >= threshold]
    segments = sorted({row["best_segment"] for row in specialised})
    scored = [row["best_auroc"] for row in table if row["best_auroc"] is not None]
    return {
        "heads": len(table),
        "specialised_heads": len(specialised),
        "distinct_segments": len(segments),
        "segments": segments,
        "threshold": threshold,
        "mean_best_auroc": float(np.mean(scored)) if scored else None,
        "mean_entropy": float(np.mean([row["entropy"] for row in table])) if table else None,
    }
