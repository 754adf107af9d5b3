"""Carry a prompted slice's mask through the volume, slice by slice, in both directions.

Each next slice is prompted with the previous mask's tight box (optionally with the previous slice's
low-resolution logits as SAM's mask prompt). The box is never enlarged by default: an enlarged box
compounds (a mask that leaks grows the next box, which leaks more), which is how propagation ran away on
scans it was not tuned on. A box-prompted SAM (LiteMedSAM especially) returns *some* blob inside any
box, so waiting for an empty mask never stops the walk past an organ's end. Instead each new mask must
stay consistent with what came before: the model's own IoU estimate, the change of area, the overlap
with the previous mask, and the intensities inside the mask against the prompted slice's. The first slice
that fails ends that direction, and the reason is reported. ``bench/segment_robustness.py`` measures
every rule on volumes split into a tuning and a reporting half.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..metrics import dice
from .segmenter import MaskPrediction, Prompt
from .volume_segmenter import VolumeSegmenter


@dataclass(frozen=True)
class PropagationConfig:
    max_slices: int | None = None  # per direction; None: to the volume's end
    box_margin: float = 0.0  # enlarge the previous mask's box by this fraction of its size per side (compounds)
    min_box_margin_px: int = 2
    # enlarge it by this many slice spacings (in mm, per side): a surface inclined up to atan(value) from the
    # slice normal stays inside, on thin and thick slices alike, and growth adds up linearly, not geometrically
    box_margin_slices: float = 1.0
    min_predicted_iou: float = 0.6
    # allowed area change from one slice to the next. Growth up to x3: small structures (pancreas, lesions on
    # thick slices) and seeds drawn short of the organ's edge change that fast, and the box margin cannot
    # compound, so growth alone no longer means a runaway (bench/segment_stop_rules.py, tuning half)
    area_ratio: tuple[float, float] = (0.4, 3.0)
    min_overlap: float = 0.4  # Dice of the new mask with the previous one
    intensity_tolerance: float | None = None  # allowed shift of the mean windowed intensity (0..1 scale)
    # share of the mask's pixels that must lie in the prompted slice's 5th-95th percentile intensity range
    min_intensity_inliers: float | None = 0.4
    # an organ's cross-section shrinks toward its end: once the area has fallen from its peak, growing
    # again past this factor of the smallest area since then means the mask is leaking
    max_regrowth: float | None = None
    retry_tight_box: bool = False  # a slice failing with the enlarged box is prompted again with the tight one
    min_area_px: int = 3

    @classmethod
    def plain(cls) -> "PropagationConfig":
        """The baseline: the previous mask's box plus 2 px, stopped only by the model's IoU estimate."""
        return cls(box_margin=0.0, min_box_margin_px=2, box_margin_slices=0.0, area_ratio=(0.0, float("inf")), min_overlap=0.0,
                   intensity_tolerance=None, min_intensity_inliers=None, max_regrowth=None, retry_tight_box=False)

    @classmethod
    def v1(cls) -> "PropagationConfig":
        """The first release's rules (10 % + 2 px box growth per slice), kept for comparison."""
        return cls(box_margin=0.1, min_box_margin_px=2, box_margin_slices=0.0, area_ratio=(0.4, 1.8),
                   intensity_tolerance=0.16, min_intensity_inliers=None, retry_tight_box=False)


@dataclass
class SliceRecord:
    index: int
    predicted_iou: float
    area: int
    overlap: float
    intensity: float
    accepted: bool
    reason: str = ""
    inliers: float = float("nan")  # share of mask pixels in the prompted slice's intensity range


@dataclass
class PropagationResult:
    axis: str
    seed_index: int
    masks: dict[int, np.ndarray]  # accepted slice masks (rows, cols), the seed included
    records: list[SliceRecord] = field(default_factory=list)
    stop_reasons: dict[str, str] = field(default_factory=dict)  # "up"/"down" → why that direction ended
    corrected: int = 0  # slices whose mask was corrected rather than accepted as predicted

    @property
    def slice_range(self) -> tuple[int, int]:
        return min(self.masks), max(self.masks)


@dataclass(frozen=True)
class IntensityReference:
    """The prompted slice's intensities inside its mask: mean and 5th-95th percentile range (0..1 scale)."""

    mean: float
    low: float
    high: float

    @classmethod
    def of(cls, image: np.ndarray, mask: np.ndarray) -> "IntensityReference":
        values = image[mask]
        low, high = np.percentile(values, [5, 95])
        return cls(float(values.mean()), float(low), float(high))

    def inliers(self, values: np.ndarray) -> float:
        return float(((values >= self.low) & (values <= self.high)).mean()) if values.size else 0.0


def box_of(mask: np.ndarray, margin: float = 0.0, min_margin_px: float | tuple[float, float] = 0
           ) -> tuple[float, float, float, float]:
    """``(x0, y0, x1, y1)`` pixel box of a mask, enlarged by ``margin`` of its size (at least ``min_margin_px``,
    one value or ``(x, y)``), clipped to the image."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        raise InputError("the mask is empty; there is no box to prompt with")
    min_x, min_y = np.broadcast_to(np.asarray(min_margin_px, float), (2,))
    pad_x = max(min_x, margin * (cols.max() - cols.min() + 1))
    pad_y = max(min_y, margin * (rows.max() - rows.min() + 1))
    height, width = mask.shape
    return (max(0.0, cols.min() - pad_x), max(0.0, rows.min() - pad_y),
            min(width - 1.0, cols.max() + pad_x), min(height - 1.0, rows.max() + pad_y))


@dataclass
class AreaTrend:
    """Largest area so far in one direction, and the smallest since that peak."""

    peak: int
    trough: int

    def update(self, area: int) -> None:
        if area >= self.peak:
            self.peak = self.trough = area
        else:
            self.trough = min(self.trough, area)

    def regrowth(self, area: int) -> float:
        """How many times the smallest area since the peak ``area`` is, once the area has clearly fallen."""
        return area / max(self.trough, 1) if self.trough < 0.8 * self.peak else 1.0


def check_slice(config: PropagationConfig, record: SliceRecord, previous_area: int, reference: IntensityReference,
                trend: AreaTrend) -> str:
    """Why ``record``'s mask ends the walk under ``config`` (the first stop rule it fails), or "" to go on."""
    if record.area < config.min_area_px:
        return "mask vanished"
    if record.predicted_iou < config.min_predicted_iou:
        return f"model's IoU estimate {record.predicted_iou:.2f} < {config.min_predicted_iou}"
    ratio = record.area / max(previous_area, 1)
    if not config.area_ratio[0] <= ratio <= config.area_ratio[1]:
        return f"area changed x{ratio:.2f} from the previous slice"
    if record.overlap < config.min_overlap:
        return f"overlap with the previous slice {record.overlap:.2f} < {config.min_overlap}"
    if config.intensity_tolerance is not None and abs(record.intensity - reference.mean) > config.intensity_tolerance:
        return f"mean intensity moved {record.intensity - reference.mean:+.2f} from the prompted slice"
    if config.min_intensity_inliers is not None and record.inliers < config.min_intensity_inliers:
        return (f"only {record.inliers:.0%} of the mask lies in the prompted slice's intensity range "
                f"(< {config.min_intensity_inliers:.0%})")
    if config.max_regrowth is not None and trend.regrowth(record.area) > config.max_regrowth:
        return f"area grew again x{trend.regrowth(record.area):.2f} after shrinking toward the organ's end"
    return ""


def _connected_to(mask: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """The pieces of ``mask`` touching ``previous``: stray blobs must not grow the next box."""
    labelled, _ = ndimage.label(mask)
    touching = np.unique(labelled[mask & ndimage.binary_dilation(previous, iterations=2)])
    return np.isin(labelled, touching[touching > 0]) if touching.any() else mask


def _predict(segmenter: VolumeSegmenter, axis: str, index: int, prompt: Prompt, previous: MaskPrediction,
             context: tuple[PropagationConfig, IntensityReference, AreaTrend]) -> tuple[MaskPrediction, SliceRecord]:
    config, reference, trend = context
    prediction = segmenter.segment_slice(axis, index, prompt)
    mask, values = prediction.mask, segmenter.slice_image(axis, index)[prediction.mask]
    record = SliceRecord(index, prediction.iou, int(mask.sum()), dice(mask, previous.mask),
                         float(values.mean()) if values.size else float("nan"), True, inliers=reference.inliers(values))
    record.reason = check_slice(config, record, int(previous.mask.sum()), reference, trend)
    record.accepted = not record.reason
    return prediction, record


def _margin_px(segmenter: VolumeSegmenter, axis: str, config: PropagationConfig) -> tuple[float, float]:
    """Per-side ``(x, y)`` box margin in pixels: the fixed one, or ``box_margin_slices`` slice spacings."""
    stack = segmenter.stack(axis)
    slice_mm = segmenter.volume.spacing[::-1][stack.array_axes[0]]
    row_mm, col_mm = stack.pixel_spacing
    return (max(config.min_box_margin_px, config.box_margin_slices * slice_mm / col_mm),
            max(config.min_box_margin_px, config.box_margin_slices * slice_mm / row_mm))


def _step(segmenter: VolumeSegmenter, axis: str, index: int, previous: MaskPrediction,
          context: tuple[PropagationConfig, IntensityReference, AreaTrend]) -> tuple[MaskPrediction, SliceRecord, bool]:
    """Prompt slice ``index`` from the previous mask; returns the prediction, its record, and whether the
    tight box had to replace the enlarged one."""
    config = context[0]
    box = box_of(previous.mask, config.box_margin, _margin_px(segmenter, axis, config))
    prediction, record = _predict(segmenter, axis, index, Prompt(box=box), previous, context)
    enlarged = config.box_margin > 0 or config.min_box_margin_px > 0 or config.box_margin_slices > 0
    if record.accepted or not (config.retry_tight_box and enlarged):
        return prediction, record, False
    tight = Prompt(box=box_of(previous.mask))
    retried, retried_record = _predict(segmenter, axis, index, tight, previous, context)
    return (retried, retried_record, True) if retried_record.accepted else (prediction, record, False)


def _walk(segmenter: VolumeSegmenter, axis: str, seed: MaskPrediction, step: int, limit: int | None,
          context: tuple[PropagationConfig, IntensityReference], result: PropagationResult, on_slice,
          should_stop) -> str:
    """Walk from the seed in one direction, at most ``limit`` slices, adding accepted masks to ``result``;
    returns why it stopped."""
    config, reference = context
    previous, index, walked = seed, result.seed_index + step, 0
    trend = AreaTrend(int(seed.mask.sum()), int(seed.mask.sum()))
    count = segmenter.stack(axis).shape[0]
    while True:
        if not 0 <= index < count:
            return "reached the end of the volume"
        if limit is not None and walked >= limit:
            return f"reached the range limit of {limit} slices"
        if should_stop():
            return "cancelled"
        prediction, record, corrected = _step(segmenter, axis, index, previous, (config, reference, trend))
        result.records.append(record)
        if on_slice is not None:
            on_slice(record)
        if not record.accepted:
            return f"slice {index}: {record.reason}"
        result.corrected += corrected
        prediction.mask = _connected_to(prediction.mask, previous.mask)
        trend.update(int(prediction.mask.sum()))
        result.masks[index], previous = prediction.mask, prediction
        index += step
        walked += 1


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
    return propagate_seed(segmenter, axis, seed_index, seed, config, on_slice, should_stop)


def propagate_seed(segmenter: VolumeSegmenter, axis: str, seed_index: int, seed: MaskPrediction,
                   config: PropagationConfig, on_slice: Callable[[SliceRecord], None] | None = None,
                   should_stop: Callable[[], bool] = lambda: False,
                   reach: dict[str, int | None] | None = None) -> PropagationResult:
    """Walk up and down from a slice already segmented (``seed``, its ``(rows, cols)`` mask not empty).

    ``reach`` caps the slices walked per direction (``{"up": n, "down": m}``); a direction it does not name
    walks up to ``config.max_slices``.
    """
    reference = IntensityReference.of(segmenter.slice_image(axis, seed_index), seed.mask)
    result = PropagationResult(axis, seed_index, {seed_index: seed.mask})
    for name, step in (("up", 1), ("down", -1)):
        limit = (reach or {}).get(name, config.max_slices)
        result.stop_reasons[name] = _walk(segmenter, axis, seed, step, limit, (config, reference), result,
                                          on_slice, should_stop)
    return result
