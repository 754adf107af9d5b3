"""Per-slice importance of a volume along one axis, from a vision encoder and from the voxels themselves.

The encoder is one of the project's attention probes (:mod:`vfmlab.probes`): each slice, windowed as the
segmenters see it, goes through the encoder once; its attention maps give the concentration component
and its pooled features the novelty component (and later the fusion). The voxels give foreground and
contrast, a segmentation the segment component. Every component is scaled to [0, 1] over the volume's
slices, and the score is their weighted mean (:class:`~.config.ScoreWeights`).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..segment.intensity import IntensityWindow
from ..slices import SliceStack
from ..volume import Volume
from .config import KeySliceConfig, ScoreWeights


@dataclass
class SliceScores:
    """``components[name]`` and ``total`` are ``(N,)`` arrays over the slices along ``axis`` (display order);
    ``features`` ``(N, D)`` the encoder's pooled output per slice; ``window`` the intensity window the slices
    were scored (and are shown) in."""

    axis: str
    components: dict[str, np.ndarray]
    total: np.ndarray
    features: np.ndarray
    window: IntensityWindow

    def __len__(self) -> int:
        return len(self.total)


def encode_slices(images: np.ndarray, probe, progress: Callable[[int, int], None] | None = None):
    """``(N, rows, cols)`` images in [0, 1] through ``probe``: ``(entropy (N,), features (N, D))``."""
    from ..probes.metrics import attention_entropy

    entropy, features = np.zeros(len(images)), []
    for index, image in enumerate(images):
        rgb = np.repeat((np.clip(image, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2)
        maps = probe.attention(rgb)
        entropy[index] = float(attention_entropy(maps.heads).mean())
        features.append(maps.features if maps.features is not None else maps.mean.ravel())
        if progress is not None:
            progress(index + 1, len(images))
    return entropy, np.asarray(features, dtype=np.float64)


def novelty(features: np.ndarray) -> np.ndarray:
    """``(N,)`` 1 - cosine similarity of each slice's features to the mean of its neighbours' (one at the ends)."""
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    if len(unit) < 2:
        return np.zeros(len(unit))
    previous = np.vstack([unit[1:2], unit[:-1]])
    following = np.vstack([unit[1:], unit[-2:-1]])
    neighbours = previous + following
    neighbours /= np.maximum(np.linalg.norm(neighbours, axis=1, keepdims=True), 1e-12)
    return 1.0 - np.sum(unit * neighbours, axis=1)


def voxel_components(images: np.ndarray, foreground_level: float) -> dict[str, np.ndarray]:
    """Foreground share and intensity spread inside the foreground, per slice."""
    inside = images > foreground_level
    share = inside.mean(axis=(1, 2))
    spread = np.array([float(image[mask].std()) if mask.any() else 0.0 for image, mask in zip(images, inside)])
    return {"foreground": share, "contrast": spread}


def scaled(values: np.ndarray) -> np.ndarray:
    """Min-max scaled to [0, 1] (all zeros when the slices do not differ)."""
    values = np.asarray(values, dtype=np.float64)
    span = values.max() - values.min() if values.size else 0.0
    return (values - values.min()) / span if span > 1e-12 else np.zeros_like(values)


def combine(components: dict[str, np.ndarray], weights: ScoreWeights) -> np.ndarray:
    """The weighted mean of the scaled components present (a component left out does not dilute the others)."""
    used = {name: weight for name, weight in weights.as_dict().items() if name in components and weight > 0}
    if not used:
        raise InputError("every score weight is zero: give at least one component a weight")
    return sum(weight * scaled(components[name]) for name, weight in used.items()) / sum(used.values())


def image_components(images: np.ndarray, probe, foreground_level: float,
                     progress: Callable[[int, int], None] | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The components the images alone give (attention, novelty, foreground, contrast), and the features."""
    entropy, features = encode_slices(images, probe, progress)
    return ({"attention": 1.0 - entropy, "novelty": novelty(features), **voxel_components(images, foreground_level)},
            features)


def score_slices(volume: Volume, config: KeySliceConfig, probe, segmentation: np.ndarray | None = None,
                 progress: Callable[[int, int], None] | None = None) -> SliceScores:
    """Score every slice of ``volume`` along ``config.axis``; ``segmentation``: ``(K, J, I)`` labels or None."""
    if volume.array.ndim != 3:
        raise InputError(f"key slices need a 3D volume, got shape {volume.array.shape}")
    stack = SliceStack.of(volume, config.axis)
    window = IntensityWindow.for_modality(volume.array)
    images = window.apply(np.ascontiguousarray(stack.view(volume.array)))
    components, features = image_components(images, probe, config.foreground_level, progress)
    if segmentation is not None:
        if segmentation.shape != volume.array.shape:
            raise InputError(f"the segmentation's shape {segmentation.shape} is not the volume's {volume.array.shape}")
        components["segment"] = (stack.view(segmentation) != 0).mean(axis=(1, 2))
    return SliceScores(config.axis, components, combine(components, config.weights), features, window)
