"""Choosing key slices from their scores: important and diverse, or one contiguous run, with coverage.

``diverse`` is maximal marginal relevance (Carbonell & Goldstein 1998): slices are taken one at a time,
each time the one whose score minus ``diversity`` x its largest feature similarity to a slice already
taken is highest, so two nearly identical neighbours are not both kept. ``contiguous`` keeps the run of
neighbouring slices with the highest summed score (diffuse findings read as a block). Written here: it
is a few lines over the scores, and no library offers it for slices.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import InputError
from .config import KeySliceConfig
from .scoring import SliceScores


@dataclass
class Selection:
    """Chosen slice indices (ascending, display order along ``axis``) and how much they cover."""

    axis: str
    indices: list[int]
    slices: int  # slices along the axis
    coverage: dict = field(default_factory=dict)  # volume and per-segment coverage (see :func:`coverage`)

    def to_dict(self) -> dict:
        return asdict(self)


def select_diverse(total: np.ndarray, features: np.ndarray, count: int, diversity: float, min_gap: int = 1) -> list[int]:
    """The ``count`` slices :func:`diverse_order` takes first, in ascending order."""
    return sorted(diverse_order(total, features, count, diversity, min_gap))


def diverse_order(total: np.ndarray, features: np.ndarray, count: int, diversity: float, min_gap: int = 1) -> list[int]:
    """The first ``count`` slices by maximal marginal relevance, in the order they are taken; a slice closer
    than ``min_gap`` to one already taken waits until no other is left."""
    # Centred on the volume's mean feature: pooled encoder features of one scan are all alike (cosine ~0.99),
    # what tells two slices apart is how each departs from the scan's average.
    centred = features - features.mean(axis=0)
    unit = centred / np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-12)
    similarity = unit @ unit.T
    chosen: list[int] = [int(np.argmax(total))]
    while len(chosen) < count:
        penalty = similarity[:, chosen].max(axis=1)
        gain = total - diversity * penalty
        gain[chosen] = -np.inf
        near = np.abs(np.arange(len(total))[:, None] - np.asarray(chosen)[None, :]).min(axis=1) < min_gap
        if not np.all(near | np.isneginf(gain)):
            gain[near] = -np.inf
        chosen.append(int(np.argmax(gain)))
    return chosen


def select_contiguous(total: np.ndarray, count: int) -> list[int]:
    sums = np.convolve(total, np.ones(count), mode="valid")  # sums[s]: slices s .. s + count - 1
    start = int(np.argmax(sums))
    return list(range(start, start + count))


def coverage(indices: list[int], slices: int, cover_distance: int, foreground: np.ndarray | None = None,
             segments: dict[str, np.ndarray] | None = None) -> dict:
    """What the chosen slices cover.

    ``volume``: share of the (foreground) slices with a chosen slice at most ``cover_distance`` away, and
    the largest gap between chosen slices; per segment (``(N,)`` bool: which slices it appears on): whether
    it was hit, the share of its slices chosen and the share covered.
    """
    chosen = np.asarray(sorted(indices))
    distance = np.abs(np.arange(slices)[:, None] - chosen[None, :]).min(axis=1)
    covered = distance <= cover_distance
    wanted = np.ones(slices, bool) if foreground is None else np.asarray(foreground, bool)
    result = {"volume": {"covered": float(covered[wanted].mean()) if wanted.any() else 0.0,
                         "largest_gap": int(np.diff(chosen).max()) if len(chosen) > 1 else 0,
                         "chosen": len(chosen), "slices": slices}}
    for name, present in (segments or {}).items():
        present = np.asarray(present, bool)
        if not present.any():
            continue
        result[name] = {"hit": bool(present[chosen].any()), "chosen": int(present[chosen].sum()),
                        "chosen_share": float(present[chosen].sum() / present.sum()),
                        "covered": float(covered[present].mean()), "slices": int(present.sum())}
    return result


def select_slices(scores: SliceScores, config: KeySliceConfig, segments: dict[str, np.ndarray] | None = None) -> Selection:
    """Choose ``config.count(N)`` slices by ``config.mode``; ``segments``: name -> ``(N,)`` bool presence."""
    slices = len(scores)
    if slices == 0:
        raise InputError("the volume has no slices along this axis")
    count = config.count(slices)
    if config.mode == "diverse":
        indices = select_diverse(scores.total, scores.features, count, config.diversity, config.min_gap(slices))
    else:  # contiguous (KeySliceConfig refuses any other mode)
        indices = select_contiguous(scores.total, count)
    foreground = scores.components["foreground"] > 0
    return Selection(scores.axis, indices, slices, coverage(indices, slices, config.cover_distance, foreground, segments))
