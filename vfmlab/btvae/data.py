"""Training material: 2D slices of volumes with a reference segment, or 2D image + mask folders.

Every slice becomes a square ``size × size`` image in [0, 1] and a binary mask; slices where the
segment is absent are kept as negatives (BT-VAE's point is how models behave on them). Volume
slices are cut with :class:`vfmlab.slices.SliceStack` (display orientation, one pixel per voxel)
and scaled with :mod:`vfmlab.segment.intensity` (HU window for CT, percentiles otherwise).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from vfmlab.errors import InputError
from vfmlab.segment.intensity import IntensityWindow
from vfmlab.slices import SliceStack
from vfmlab.volume import Volume

from .config import DataConfig

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


@dataclass(frozen=True)
class SquareFit:
    """Centre-pads an (h, w) slice to a square with zeros, resizes it to ``size²``; and back.

    Padding instead of stretching keeps anatomy's aspect ratio, and a centred square keeps the
    image centre fixed under the 90° rotations of stage 1.
    """

    height: int
    width: int
    size: int

    @property
    def _pads(self) -> tuple[int, int, int, int]:
        side = max(self.height, self.width)
        top, left = (side - self.height) // 2, (side - self.width) // 2
        return left, side - self.width - left, top, side - self.height - top

    def to_model(self, slices: np.ndarray, is_mask: bool = False) -> np.ndarray:
        """(N, h, w) → (N, size, size) float32; masks by nearest neighbour, images bilinear."""
        tensor = F.pad(torch.as_tensor(np.ascontiguousarray(slices), dtype=torch.float32)[:, None], self._pads)
        mode = "nearest-exact" if is_mask else "bilinear"
        extra = {} if is_mask else {"align_corners": False, "antialias": True}
        resized = F.interpolate(tensor, size=(self.size, self.size), mode=mode, **extra)[:, 0].numpy()
        # Antialiased resampling may overshoot the input range by rounding; keep [0, 1] inputs in [0, 1].
        return resized if is_mask else np.clip(resized, min(0.0, float(slices.min())), float(slices.max()))

    def from_model(self, maps: np.ndarray) -> np.ndarray:
        """(N, size, size) per-pixel maps (probability, variance) → (N, h, w), bilinear."""
        side = max(self.height, self.width)
        tensor = torch.as_tensor(np.ascontiguousarray(maps), dtype=torch.float32)[:, None]
        tensor = F.interpolate(tensor, size=(side, side), mode="bilinear", align_corners=False)[:, 0]
        left, _, top, _ = self._pads
        return tensor[:, top : top + self.height, left : left + self.width].numpy()


@dataclass
class SliceSet:
    """images (N, S, S) float32 in [0, 1]; masks (N, S, S) bool; names say where each slice came from."""

    images: np.ndarray
    masks: np.ndarray
    names: list[str]
    _labelling_order: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.names)

    def labelling_order(self) -> np.ndarray:
        """Every slice, the most worth labelling first (:func:`vfmlab.keyslices.run.labelling_order`, from the
        images alone); computed once per set, so a study's runs at several ratios encode the slices once."""
        if self._labelling_order is None:
            from vfmlab.keyslices.run import labelling_order

            self._labelling_order = labelling_order(self.images)
        return self._labelling_order

    @property
    def positive(self) -> np.ndarray:
        """(N,) True where the segment is present."""
        return self.masks.reshape(len(self), -1).any(axis=1)

    def subset(self, indices: np.ndarray) -> "SliceSet":
        return SliceSet(self.images[indices], self.masks[indices], [self.names[i] for i in indices])

    @classmethod
    def concatenate(cls, parts: list["SliceSet"]) -> "SliceSet":
        return cls(
            np.concatenate([p.images for p in parts]),
            np.concatenate([p.masks for p in parts]),
            [name for p in parts for name in p.names],
        )


def intensity_window(volume: Volume, config: DataConfig) -> IntensityWindow:
    modality = {"auto": "auto", "ct": "ct", "percentile": "other"}[config.intensity]
    return IntensityWindow.for_modality(volume.array, modality, config.ct_window)


def volume_slices(volume: Volume, config: DataConfig, size: int) -> tuple[np.ndarray, SliceStack, SquareFit]:
    """All slices of ``volume`` along ``config.axis`` as model inputs (N, size, size)."""
    stack = SliceStack.of(volume, config.axis)
    fit = SquareFit(stack.shape[1], stack.shape[2], size)
    scaled = intensity_window(volume, config).apply(stack.view(volume.array))
    return fit.to_model(scaled), stack, fit


def slices_from_volume(volume: Volume, labels: np.ndarray, label: int, config: DataConfig, size: int) -> SliceSet:
    """Slices of a volume and the binary mask of ``label`` in its (K, J, I) label array."""
    if labels.shape != volume.array.shape:
        raise InputError(f"label array {labels.shape} (K, J, I) does not match the volume's {volume.array.shape}")
    mask = labels == label
    if not mask.any():
        present = [int(v) for v in np.unique(labels) if v != 0][:20]
        raise InputError(f"label {label} does not occur in the label map (labels present: {present})")
    images, stack, fit = volume_slices(volume, config, size)
    masks = fit.to_model(stack.view(mask).astype(np.float32), is_mask=True) > 0.5
    names = [f"{volume.name}[{config.axis} {index}]" for index in range(stack.shape[0])]
    return SliceSet(images.astype(np.float32), masks, names)


def _read_gray(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("L") if image.mode in ("RGB", "RGBA", "P", "LA") else image)
    except (OSError, UnidentifiedImageError) as exc:
        raise InputError(f"cannot be read as an image ({exc})", path) from None
    if array.ndim != 2:
        raise InputError(f"is not a single-channel image (shape {array.shape})", path)
    return array


def _folder_mask(masks_dir: Path, image: Path, label: str) -> np.ndarray | None:
    """Mask of ``label`` for ``image``; None when the folder has no mask file for it (a negative).

    Two layouts: ``masks/<image name>`` holding label values (palette PNG, e.g. usgra_seg), or
    ``masks/<image stem>_<label>_NNN.png`` binary files, one per instance (SAM-Med2D).
    """
    same_name = masks_dir / image.name
    if same_name.is_file():
        if not label.isdigit():
            raise InputError(f"masks are label-value images; give the label as a number, not '{label}'", same_name)
        return _read_gray_raw(same_name) == int(label)
    pattern = re.compile(re.escape(f"{image.stem}_{label}_") + r"\d+\.png$")
    instances = [p for p in sorted(masks_dir.iterdir()) if pattern.match(p.name)]
    if not instances:
        return None
    return np.logical_or.reduce([_read_gray(p) > 0 for p in instances])


def _read_gray_raw(path: Path) -> np.ndarray:
    """Palette indices as stored (no colour conversion): the values are labels, not colours."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image)


def slices_from_folder(folder: str | Path, label: str, size: int) -> SliceSet:
    """``folder/images/*`` with masks in ``folder/masks`` (see :func:`_folder_mask`)."""
    folder = Path(folder)
    images_dir, masks_dir = folder / "images", folder / "masks"
    if not images_dir.is_dir() or not masks_dir.is_dir():
        raise InputError("needs 'images' and 'masks' subfolders", folder)
    paths = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise InputError("has no images (png, jpg, tif, bmp)", images_dir)
    images, masks = [], []
    for path in paths:
        image = _read_gray(path)
        mask = _folder_mask(masks_dir, path, str(label))
        mask = np.zeros(image.shape, bool) if mask is None else mask
        if mask.shape != image.shape:
            raise InputError(f"mask {mask.shape} and image {image.shape} differ in size", path)
        window = IntensityWindow(0.0, 255.0) if image.dtype == np.uint8 else IntensityWindow.percentile(image)
        fit = SquareFit(*image.shape, size)
        images.append(fit.to_model(window.apply(image)[None])[0])
        masks.append(fit.to_model(mask[None].astype(np.float32), is_mask=True)[0] > 0.5)
    result = SliceSet(np.stack(images).astype(np.float32), np.stack(masks), [f"{folder.name}/{p.name}" for p in paths])
    if not result.positive.any():
        raise InputError(f"no mask of label '{label}' in {masks_dir}", folder)
    return result


def load_sources(sources: list[dict[str, Any]], label: str, config: DataConfig, size: int) -> SliceSet:
    """Slices of every source: ``{"volume": PATH, "labels": PATH}`` or ``{"folder": PATH}`` (JSON-ready)."""
    from vfmlab.volume_io import read_labels, read_volume

    if not sources:
        raise InputError("no training data given")
    parts = []
    for source in sources:
        if "folder" in source:
            parts.append(slices_from_folder(source["folder"], label, size))
            continue
        if not str(label).lstrip("-").isdigit():
            raise InputError(f"a label map needs a numeric label value, got '{label}'")
        volume = read_volume(source["volume"])
        labels = read_labels(source["labels"], volume)
        parts.append(slices_from_volume(volume, labels, int(label), config, size))
    return SliceSet.concatenate(parts)


@dataclass(frozen=True)
class Split:
    """Indices into a :class:`SliceSet`: held-back test slices, and the labelled / unlabelled training slices."""

    test: np.ndarray
    labelled: np.ndarray
    unlabelled: np.ndarray

    @property
    def training(self) -> np.ndarray:
        """Every non-test slice: stage 1 sees all of their images, never a mask."""
        return np.sort(np.concatenate([self.labelled, self.unlabelled]))

    def to_dict(self) -> dict[str, list[int]]:
        return {key: [int(i) for i in getattr(self, key)] for key in ("test", "labelled", "unlabelled")}


def split_slices(positive: np.ndarray, config: DataConfig, priority: np.ndarray | None = None) -> Split:
    """Stratified (positive / negative slices) split with ``config.seed``.

    The test slices are drawn first and do not depend on the ratio; labelled slices are the first
    ``ratio`` of one fixed shuffle of the rest, so a smaller ratio's labelled set is contained in a
    larger one's. At least one positive slice is labelled and, when there are two, tested. With
    ``priority`` (every slice index, most worth labelling first: :func:`vfmlab.keyslices.run.labelling_order`)
    the rest is taken in that order instead of the shuffle; the test slices stay the same.
    """
    config.validate()
    positive = np.asarray(positive, bool)
    if positive.sum() < 2:
        raise InputError(f"the segment is present in {int(positive.sum())} slice(s); at least 2 are needed")
    rng = np.random.default_rng(config.seed)
    test, labelled, unlabelled = [], [], []
    for stratum in (np.flatnonzero(positive), np.flatnonzero(~positive)):
        if len(stratum) == 0:
            continue
        order = rng.permutation(stratum)
        is_positive = bool(positive[stratum[0]])
        n_test = max(1, round(config.test_fraction * len(order)))
        if is_positive:
            n_test = min(n_test, len(order) - 1)  # keep one positive to learn from
        pool = order[n_test:]
        if priority is not None:
            rank = np.empty(len(positive), np.int64)
            rank[np.asarray(priority)] = np.arange(len(positive))
            pool = pool[np.argsort(rank[pool], kind="stable")]
        n_labelled = round(config.ratio * len(pool))
        if is_positive:
            n_labelled = max(1, n_labelled)
        test.append(order[:n_test])
        labelled.append(pool[:n_labelled])
        unlabelled.append(pool[n_labelled:])
    return Split(*(np.sort(np.concatenate(parts)).astype(np.int64) for parts in (test, labelled, unlabelled)))
