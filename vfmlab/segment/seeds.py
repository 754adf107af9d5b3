"""Prompts on one or several slices of one segment (e.g. at the key slices of :mod:`vfmlab.keyslices`),
segmented alone or propagated together: :func:`segment_prompts` is what the CLI and the model server (and
through it the panels) call.

Several seeds share the volume between them: each walks toward its neighbouring seeds as far as the next
one, so every slice between two seeds is reached from both sides while the walks hold, and the outermost
seeds walk outward until a stop rule fires or ``max_slices`` (which limits only these outward walks). Where
both walks into a gap stop short (a hard slice for both), the seeds farther out walk into the hole, each
with its own intensity reference and area trend, nearest first, until it is filled: only then are slices
decoded more than twice. A seed whose prompt finds nothing bounds the segment: no walk crosses its slice
(measured: without that, a kept seed next to an organ's end walked on along the vessel below it). Each
slice takes the mask of the nearest seed whose walk reached it: the nearer prompt knows more about it.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .propagate import PropagationConfig, PropagationResult, SliceRecord, propagate_seed
from .segmenter import Prompt
from .volume_segmenter import VolumeSegmenter


def _reach(index: int, kept: list[int], empty: list[int]) -> dict[str, int]:
    """How far the seed on slice ``index`` walks each way: onto the next kept seed's slice, or up to the
    slice before an empty seed; with no seed beyond (outward), ``max_slices`` applies."""
    reach = {}
    seeds = kept + empty
    for name, beyond in (("down", [s for s in seeds if s < index]), ("up", [s for s in seeds if s > index])):
        if beyond:
            nearest = max(beyond) if name == "down" else min(beyond)
            reach[name] = abs(index - nearest) - (nearest in empty)
    return reach


def _holes(kept: list[int], walks: list[tuple[int, PropagationResult]]) -> list[tuple[int, int]]:
    """``(first, last)`` runs of slices between the lowest and the highest seed that no walk reached."""
    covered = set(kept).union(*(walk.masks for _, walk in walks))
    runs: list[list[int]] = []
    for index in (i for i in range(kept[0], kept[-1] + 1) if i not in covered):
        if runs and runs[-1][1] == index - 1:
            runs[-1][1] = index
        else:
            runs.append([index, index])
    return [(first, last) for first, last in runs]


def _fill_hole(segmenter: VolumeSegmenter, axis: str, hole: tuple[int, int], seeds: tuple[list[int], list[int]],
               segmented: dict, config: PropagationConfig, on_slice,
               should_stop) -> list[tuple[int, PropagationResult]]:
    """Walks into a hole that both neighbouring seeds' walks stopped short of, from the kept seeds farther
    out with no empty seed on the way (nearest first, each with its own intensity reference and area
    trend), until the hole is filled."""
    (first, last), (kept, empty) = hole, seeds
    neighbours = (max(seed for seed in kept if seed < first), min(seed for seed in kept if seed > last))
    farther = sorted((seed for seed in kept if seed not in neighbours
                      and not any(min(seed, first) < bound < max(seed, last) for bound in empty)),
                     key=lambda seed: first - seed if seed < first else seed - last)
    walks, left = [], set(range(first, last + 1))
    for seed in farther:
        if not left or should_stop():
            break
        reach = {"down": 0, "up": last - seed} if seed < first else {"up": 0, "down": seed - first}
        walk = propagate_seed(segmenter, axis, seed, segmented[seed], config, on_slice, should_stop, reach)
        walks.append((seed, walk))
        left -= set(walk.masks)
    return walks


def propagate_from_seeds(segmenter: VolumeSegmenter, axis: str, seeds: dict[int, Prompt],
                         config: PropagationConfig = PropagationConfig(),
                         on_slice: Callable[[SliceRecord], None] | None = None,
                         should_stop: Callable[[], bool] = lambda: False) -> PropagationResult:
    """Prompts on several slices ``{index: Prompt}``, each propagated toward its neighbours (see the module).

    Where both walks into the gap between two seeds stop short, the seeds farther out walk into the hole.
    A seed whose prompt gives an empty mask (a slice past an organ's end, or its last few pixels) bounds
    the segment: no walk crosses its slice, and ``stop_reasons`` names it (``"seed K"``); when all are
    empty it raises.
    ``stop_reasons["down"]`` / ``["up"]`` are the lowest seed's and the highest seed's. A cancel between
    seeds keeps the prompted slices' masks. The result's ``seed_index`` is the lowest kept seed.
    """
    if not seeds:
        raise InputError("no seed prompts: give at least one")
    segmented = {index: segmenter.segment_slice(axis, index, seeds[index]) for index in sorted(seeds)}
    kept = [index for index, seed in segmented.items() if seed.mask.sum() >= config.min_area_px]
    empty = [index for index in segmented if index not in kept]
    if not kept:
        where = f"slice {next(iter(seeds))}" if len(seeds) == 1 else f"slices {sorted(seeds)}"
        raise InputError(f"the prompt gave an empty mask on {axis} {where}; adjust the box or points")
    walks: list[tuple[int, PropagationResult]] = []
    for index in kept:
        if should_stop():
            break
        walks.append((index, propagate_seed(segmenter, axis, index, segmented[index], config, on_slice, should_stop,
                                            _reach(index, kept, empty))))
    for hole in _holes(kept, walks) if len(walks) == len(kept) else []:
        walks += _fill_hole(segmenter, axis, hole, (kept, empty), segmented, config, on_slice, should_stop)
    return _merged(axis, (kept, empty), segmented, walks)


def _merged(axis: str, seeds: tuple[list[int], list[int]], segmented: dict,
            walks: list[tuple[int, PropagationResult]]) -> PropagationResult:
    """Each slice from the nearest seed whose walk reached it (a seed's own slice from its prompt)."""
    kept, empty = seeds
    merged = PropagationResult(axis, kept[0], {index: segmented[index].mask for index in kept})
    distance = {index: 0 for index in kept}
    for seed, walk in walks:
        for index, mask in walk.masks.items():
            if abs(seed - index) < distance.get(index, float("inf")):
                merged.masks[index], distance[index] = mask, abs(seed - index)
        merged.records += walk.records
        merged.corrected += walk.corrected
    merged.masks = dict(sorted(merged.masks.items()))
    first_walks = {seed: walk for seed, walk in reversed(walks)}  # each seed's walk toward its neighbours
    for name, end, bounds in (("down", kept[0], [s for s in empty if s < kept[0]]),
                              ("up", kept[-1], [s for s in empty if s > kept[-1]])):
        reason = first_walks[end].stop_reasons[name] if end in first_walks else "cancelled"
        if bounds and reason.startswith("reached the range limit"):
            bound = max(bounds) if name == "down" else min(bounds)
            reason = f"stopped before slice {bound}, whose prompt gave an empty mask"
        merged.stop_reasons[name] = reason
    merged.stop_reasons.update({f"seed {index}": "empty mask: the walks stop before it" for index in empty})
    return merged


@dataclass
class PromptMasks:
    """What the prompts of one segment gave, on the volume's grid."""

    mask: np.ndarray  # bool (K, J, I)
    slices: tuple[int, int]  # first and last slice with a mask, along the prompts' axis
    predicted_iou: float | None  # the model's estimate (the lowest of the prompted slices), unpropagated only
    stop_reasons: dict[str, str]  # why each direction of a propagation ended


def segment_prompts(segmenter: VolumeSegmenter, axis: str, prompts: dict[int, Prompt],
                    config: PropagationConfig | None = None,
                    on_slice: Callable[[SliceRecord], None] | None = None,
                    should_stop: Callable[[], bool] = lambda: False) -> PromptMasks:
    """Segment the prompted slices ``{index: Prompt}`` of one segment; with a ``config`` propagate from them."""
    if not prompts:
        raise InputError("no prompts: give a box or points on at least one slice")
    if config is None:
        predictions = {index: segmenter.segment_slice(axis, index, prompts[index]) for index in sorted(prompts)}
        masks = {index: prediction.mask for index, prediction in predictions.items()}
        iou, stops = min(float(prediction.iou) for prediction in predictions.values()), {}
    else:
        result = propagate_from_seeds(segmenter, axis, prompts, config, on_slice, should_stop)
        masks, iou, stops = result.masks, None, result.stop_reasons
    return PromptMasks(segmenter.to_volume_mask(axis, masks), (min(masks), max(masks)), iou, stops)
