"""A volume-level descriptor from its key slices, and volumes ranked by it.

Hierarchical fusion as the slice-selection source describes it, without training: the chosen slices'
features are fused pairwise with their neighbour in slice order (local context), then the pairs are
pooled with attention weights from their importance scores (softmax at temperature ``tau``), and the
result is L2-normalised. Two volumes compare by the cosine of their descriptors.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError


def volume_descriptor(features: np.ndarray, indices: list[int], total: np.ndarray, tau: float = 0.1) -> np.ndarray:
    """``(D,)`` unit descriptor from ``features (N, D)`` of the slices ``indices`` with scores ``total (N,)``."""
    if not indices:
        raise InputError("no slices were chosen: nothing to fuse")
    order = sorted(indices)
    chosen, weights = features[order], np.asarray(total, float)[order]
    if len(order) == 1:
        pairs, pair_scores = chosen, weights
    else:
        pairs = (chosen[:-1] + chosen[1:]) / 2.0  # adjacent-pair fusion
        pair_scores = (weights[:-1] + weights[1:]) / 2.0
    attention = np.exp((pair_scores - pair_scores.max()) / tau)
    attention /= attention.sum()
    descriptor = (attention[:, None] * pairs).sum(axis=0)
    return descriptor / max(float(np.linalg.norm(descriptor)), 1e-12)


def rank_by_similarity(query: np.ndarray, others: dict[str, np.ndarray]) -> list[tuple[str, float]]:
    """``(name, cosine)`` of each other descriptor to ``query``, most similar first."""
    for name, descriptor in others.items():
        if descriptor.shape != query.shape:
            raise InputError(f"{name}: descriptor of {descriptor.shape[0]} values, the query has {query.shape[0]} "
                             "(made with another model?)")
    scored = [(name, float(np.dot(query, descriptor))) for name, descriptor in others.items()]
    return sorted(scored, key=lambda item: -item[1])
