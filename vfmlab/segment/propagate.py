"""Carry a prompted slice's mask through the volume, slice by slice, in both directions.

Each next slice is prompted with the previous mask's box, slightly enlarged. A box-prompted SAM
(LiteMedSAM especially) returns *some* blob inside any box, so waiting for an empty mask never stops
the walk past the organ's end. Instead each new mask must stay consistent with what came before:
the model's own IoU estimate, the change of area, the overlap with the previous mask, and the mean
intensity inside the mask compared with the prompted slice. The first slice that fails ends that
direction, and the reason is reported.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..errors import InputError
from .segmenter import Prompt
from .volume_segmenter import VolumeSegmenter


@dataclass(frozen=True)
class PropagationConfig:
    max_slices: int | None = None  # per direction; None: to the volume's end
    box_margin: float = 0.1  # enlarge the previous mask's box by this fraction of its size per side
    min_box_margin_px: int = 2
    min_predicted_iou: float = 0.6
    area_ratio: tuple[float, float] = (0.4, 1.8)  # allowed area change from one slice to the next
    min_overlap: float = 0.4  # Dice of the new mask with the previous one
    intensity_tolerance: float = 0.16  # allowed shift of the mean windowed intensity (0..1 scale)
    min_area_px: int = 3


@dataclass
class SliceRecord:
    index: int
    predicted_iou: float
    area: int
    overlap: float
    intensity: float
    accepted: bool
    reason: str = ""


@dataclass
class PropagationResult:
    axis: str
    seed_index: int
    masks: dict[int, np.ndarray]  # accepted slice masks (rows, cols), the seed included
    records: list[SliceRecord] = field(default_factory=list)
    stop_reasons: dict[str, str] = field(default_factory=dict)  # "up"/"down" → why that direction ended

    @property
    def slice_range(self) -> tuple[int, int]:
        return min(self.masks), max(self.masks)


def box_of(mask: np.ndarray, margin: float = 0.0, min_margin_px: int = 0) -> tuple[float, float, float, float]:
    """``(x0, y0, x1, y1)`` pixel box of a mask, enlarged by ``margin`` of its size, clipped to the image."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        raise InputError("the mask is empty; there is no box to prompt with")
    pad_x = max(min_margin_px, margin * (cols.max() - cols.min() + 1))
    pad_y = max(min_margin_px, margin * (rows.max() - rows.min() + 1))
    height, width = mask.shape
    return (max(0.0, cols.min() - pad_x), max(0.0, rows.min() - pad_y),
            min(width - 1.0, cols.max() + pad_x), min(height - 1.0, rows.max() + pad_y))


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return float(2 * np.logical_and(a, b).sum() / total) if total else 1.0


def _check(config: PropagationConfig, record: SliceRecord, previous_area: int, reference_intensity: float) -> str:
    if record.area < config.min_area_px:
        return "mask vanished"
    if record.predicted_iou < config.min_predicted_iou:
        return f"model's IoU estimate {record.predicted_iou:.2f} < {config.min_predicted_iou}"
    ratio = record.area / max(previous_area, 1)
    if not config.area_ratio[0] <= ratio <= config.area_ratio[1]:
        return f"area changed x{ratio:.2f} from the previous slice"
    if record.overlap < config.min_overlap:
        return f"overlap with the previous slice {record.overlap:.2f} < {config.min_overlap}"
    if abs(record.intensity - reference_intensity) > config.intensity_tolerance:
        return f"mean intensity moved {record.intensity - reference_intensity:+.2f} from the prompted slice"
    return ""


def propagate(
    segmenter: VolumeSegmenter,
    axis: str,
    seed_index: int,
    seed_prompt: Prompt,
    config: PropagationConfig = PropagationConfig(),
    on_slice: Callable[[SliceRecord], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> PropagationResult:
    """Segment ``seed_index`` with ``seed_prompt``, then walk up and down until a stop rule fires."""
    seed = segmenter.segment_slice(axis, seed_index, seed_prompt)
    if seed.mask.sum() < config.min_area_px:
        raise InputError(f"the prompt gave an empty mask on {axis} slice {seed_index}; adjust the box or points")
    seed_image = segmenter.slice_image(axis, seed_index)
    reference_intensity = float(seed_image[seed.mask].mean())
    result = PropagationResult(axis, seed_index, {seed_index: seed.mask})
    count = segmenter.stack(axis).shape[0]
    for name, step in (("up", 1), ("down", -1)):
        previous = seed.mask
        index = seed_index + step
        walked = 0
        while True:
            if not 0 <= index < count:
                result.stop_reasons[name] = "reached the end of the volume"
                break
            if config.max_slices is not None and walked >= config.max_slices:
                result.stop_reasons[name] = f"reached the range limit of {config.max_slices} slices"
                break
            if should_stop():
                result.stop_reasons[name] = "cancelled"
                break
            box = box_of(previous, config.box_margin, config.min_box_margin_px)
            prediction = segmenter.segment_slice(axis, index, Prompt(box=box))
            mask = prediction.mask
            image = segmenter.slice_image(axis, index)
            record = SliceRecord(index, prediction.iou, int(mask.sum()), dice(mask, previous),
                                 float(image[mask].mean()) if mask.any() else float("nan"), True)
            record.reason = _check(config, record, int(previous.sum()), reference_intensity)
            record.accepted = not record.reason
            result.records.append(record)
            if on_slice is not None:
                on_slice(record)
            if not record.accepted:
                result.stop_reasons[name] = f"slice {index}: {record.reason}"
                break
            # keep the connected piece touching the previous mask: stray blobs must not grow the next box
            labelled, _ = ndimage.label(mask)
            touching = np.unique(labelled[mask & ndimage.binary_dilation(previous, iterations=2)])
            mask = np.isin(labelled, touching[touching > 0]) if touching.any() else mask
            result.masks[index] = previous = mask
            index += step
            walked += 1
    return result
