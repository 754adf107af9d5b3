"""Training data for DeepDVR: a capture folder (view images + ``cameras.json``) and the volume it shows.

Captures come from :mod:`vfmlab.render` (``vfmlab render``: Slicer's volume rendering, a preset, no
shading for TF reconstruction), may be edited in an image editor afterwards (same file names and
aspect ratio), or are used for their segment-ID images: with ``targets="labels"`` each view's
``labels_NNN.png`` coloured by its segments' colours is the target (semantic colouring).

``cameras.json`` records the volume path and its SHA-256; :func:`load_training_set` checks both.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from ..cameras import CameraRecord, CaptureSet
from ..errors import InputError
from ..volume_io import read_volume
from ..render.images import read_label_png, read_rgb, write_rgb_png
from ..volume import Volume
from ..weights.files import sha256_of

TARGETS = ("images", "labels")


def rgb8(rgb: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` floats in [0, 1] as uint8."""
    return (np.clip(rgb, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def write_image(path: str | Path, rgb: np.ndarray) -> Path:
    """Save ``(H, W, 3)`` floats in [0, 1] as an 8-bit PNG."""
    return write_rgb_png(path, rgb8(rgb))


def segment_colors(capture: CaptureSet) -> dict[int, np.ndarray]:
    """Label value → RGB of the capture's segments (``cameras.json`` ``labels.segments``)."""
    from ..mrml.segmentations import default_color

    segments = capture.labels.get("segments", {})
    if not segments:
        raise InputError("the capture has no segment-ID images; capture with a segmentation for semantic targets")
    return {int(value): np.asarray(entry.get("color") or default_color(n), dtype=np.float32)
            for n, (value, entry) in enumerate(sorted(segments.items(), key=lambda item: int(item[0])))}


def label_colour_image(label_ids: np.ndarray, colors: dict[int, np.ndarray], background) -> np.ndarray:
    """``(H, W, 3)``: each pixel in its segment's colour, the background where no segment was hit."""
    image = np.empty(label_ids.shape + (3,), dtype=np.float32)
    image[:] = np.asarray(background, dtype=np.float32)
    for value, color in colors.items():
        image[label_ids == value] = color
    return image


@dataclass
class TrainingSet:
    """Captured views, their target images ``(H, W, 3)`` in [0, 1], and the volume they show."""

    folder: Path
    capture: CaptureSet
    volume: Volume
    volume_path: Path
    images: list[np.ndarray]
    _lattice: dict = field(default_factory=dict, repr=False)  # computed once: it renders

    @property
    def views(self) -> list[CameraRecord]:
        return self.capture.views

    def split(self, validation_every: int) -> tuple[list[int], list[int]]:
        """Training and validation view indices: every ``validation_every``-th view validates."""
        indices = list(range(len(self.views)))
        if validation_every <= 1 or len(indices) < 2:
            return indices, indices
        validation = indices[validation_every - 1 :: validation_every] or indices[-1:]
        return [i for i in indices if i not in validation], validation

    def ray_lattice(self):
        """Where the captures' renderer sampled the rays (:class:`RayLattice`), when it is known:
        Slicer's CPU ray casting (headless captures); None for other renderers or edited records."""
        if "value" not in self._lattice:
            self._lattice["value"] = None
            renderer, record = self.capture.renderer, self.capture.transfer_function
            if renderer.get("name") == "slicer-volume-rendering" and renderer.get("method") == "cpu" \
                    and record.get("color") and record.get("scalar_opacity"):
                from ..mrml.transfer_functions import cpu_ray_lattice
                from .models.base import RayLattice

                sample_distance, near = cpu_ray_lattice(self.volume, self.views, record)
                self._lattice["value"] = RayLattice(sample_distance, tuple(near))
        return self._lattice["value"]

    def use_ray_lattice(self, lattice) -> None:
        """Take a lattice found elsewhere (another DDP rank) instead of rendering to find it."""
        self._lattice["value"] = lattice

    def size_for(self, height: int) -> tuple[int, int]:
        """(width, height) at ``height`` rows keeping the captures' aspect ratio."""
        view = self.views[0]
        return max(1, round(height * view.width / view.height)), height

    def targets(self, indices: Sequence[int], width: int, height: int) -> torch.Tensor:
        """Images ``(B, 3, height, width)``, resampled with antialiasing when the size differs."""
        out = []
        for index in indices:
            image = torch.as_tensor(self.images[index]).permute(2, 0, 1)[None]
            if image.shape[-2:] != (height, width):
                image = F.interpolate(image, size=(height, width), mode="bilinear", antialias=True,
                                      align_corners=False)
            out.append(image[0].clamp(0.0, 1.0))
        return torch.stack(out)


def load_training_set(folder: str | Path, volume_path: str | Path | None = None,
                      targets: str = "images") -> TrainingSet:
    """Read a capture folder; ``volume_path`` overrides the recorded volume (the SHA-256 is still checked).

    ``targets``: "images" (the views as captured or edited) or "labels" (segment colours).
    """
    if targets not in TARGETS:
        raise InputError(f"targets must be one of {TARGETS}, got {targets!r}")
    folder = Path(folder)
    capture = CaptureSet.load(folder)
    if not capture.views:
        raise InputError("cameras.json lists no views", folder)
    volume_path = _volume_path(folder, capture, volume_path)
    if capture.volume_sha256:
        actual = sha256_of(volume_path)
        if actual != capture.volume_sha256:
            raise InputError(f"is not the volume these views were captured from: its SHA-256 is {actual[:12]}..., "
                             f"cameras.json records {capture.volume_sha256[:12]}...; pass the captured volume "
                             "with --volume", volume_path)
    volume = read_volume(volume_path)
    if not np.allclose(np.asarray(capture.ijk_to_ras), volume.ijk_to_ras, atol=1e-3):
        raise InputError("the volume's IJK to RAS differs from the one recorded in cameras.json", volume_path)
    colors = segment_colors(capture) if targets == "labels" else None
    images = []
    for view in capture.views:
        if colors is None:
            image = read_rgb(folder / view.image).astype(np.float32) / 255.0
        else:
            if not view.labels_image:
                raise InputError(f"view {view.image} has no segment-ID image", folder)
            image = label_colour_image(read_label_png(folder / view.labels_image), colors, capture.background)
        aspect_file, aspect_view = image.shape[1] / image.shape[0], view.width / view.height
        if abs(aspect_file / aspect_view - 1) > 0.01:
            raise InputError(f"is {image.shape[1]}x{image.shape[0]} but its camera record is "
                             f"{view.width}x{view.height}: an edited capture must keep its aspect ratio",
                             folder / view.image)
        images.append(image)
    return TrainingSet(folder, capture, volume, volume_path, images)


def _volume_path(folder: Path, capture: CaptureSet, override: str | Path | None) -> Path:
    if override is None:
        if not capture.volume_path:
            raise InputError("cameras.json does not record the volume; pass the volume file (--volume)", folder)
        override = Path(capture.volume_path)
        if not override.is_absolute():
            override = folder / override
    path = Path(override)
    if not path.is_file():
        raise InputError("the captured volume is not here; pass its current location (--volume)", path)
    return path
