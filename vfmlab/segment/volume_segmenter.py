"""A prompt segmenter bound to one volume: slices as the model expects them, cached embeddings."""
from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from ..errors import InputError
from ..slices import SliceStack
from ..volume import Volume
from .cache import EmbeddingCache, EmbeddingKey, volume_fingerprint
from .intensity import IntensityWindow
from .segmenter import ImageEmbedding, MaskPrediction, Prompt, PromptSegmenter


class VolumeSegmenter:
    """Segment slices of ``volume`` along any axis; embeddings are computed once per slice."""

    def __init__(
        self,
        segmenter: PromptSegmenter,
        volume: Volume,
        window: IntensityWindow | None = None,
        cache: EmbeddingCache | None = None,
    ):
        self.segmenter = segmenter
        self.volume = volume
        self.window = window or IntensityWindow.for_modality(volume.array)
        self.cache = cache if cache is not None else EmbeddingCache()
        self._stacks: dict[str, SliceStack] = {}
        self._fingerprints: dict[str, str] = {}

    def stack(self, axis: str) -> SliceStack:
        if axis not in self._stacks:
            self._stacks[axis] = SliceStack.of(self.volume, axis)
        return self._stacks[axis]

    def slice_image(self, axis: str, index: int) -> np.ndarray:
        """The ``(rows, cols)`` slice in display orientation, windowed to [0, 1]."""
        stack = self.stack(axis)
        if not 0 <= index < stack.shape[0]:
            raise InputError(f"{axis} slice {index} is outside the volume (0..{stack.shape[0] - 1})")
        return self.window.apply(stack.view(self.volume.array)[index])

    def fingerprint(self, axis: str) -> str:
        """Content hash of the slices along ``axis`` as the model sees them (display order, window).

        Not of the file's voxel order: the same scan stored flipped, or read by another reader, reuses
        its embeddings.
        """
        if axis not in self._fingerprints:
            shown = np.ascontiguousarray(self.stack(axis).view(self.volume.array))
            self._fingerprints[axis] = volume_fingerprint(shown) + f"/{self.window.low:g}:{self.window.high:g}"
        return self._fingerprints[axis]

    def _key(self, axis: str, index: int) -> EmbeddingKey:
        return EmbeddingKey(self.fingerprint(axis), axis, int(index), self.segmenter.name)

    def is_encoded(self, axis: str, index: int) -> bool:
        return self._key(axis, index) in self.cache

    def embedding(self, axis: str, index: int) -> ImageEmbedding:
        key = self._key(axis, index)
        embedding = self.cache.get(key)
        if embedding is None:
            embedding = self.segmenter.encode(self.slice_image(axis, index))
            self.cache.put(key, embedding)
        return embedding

    def segment_slice(self, axis: str, index: int, prompt: Prompt) -> MaskPrediction:
        return self.segmenter.predict(self.embedding(axis, index), prompt)

    def encode_ahead(self, axis: str, indices: Iterable[int], should_stop: Callable[[], bool] = lambda: False) -> int:
        """Encode slices not yet cached (e.g. neighbours of the current slice while the user is idle)."""
        encoded = 0
        for index in indices:
            if should_stop():
                break
            if 0 <= index < self.stack(axis).shape[0] and not self.is_encoded(axis, index):
                self.embedding(axis, index)
                encoded += 1
        return encoded

    def to_volume_mask(self, axis: str, masks: dict[int, np.ndarray]) -> np.ndarray:
        """Slice masks ``{index: (rows, cols)}`` → boolean ``(K, J, I)`` mask on the volume's grid."""
        volume_mask = np.zeros(self.volume.array.shape, bool)
        view = self.stack(axis).view(volume_mask)
        for index, mask in masks.items():
            view[index] = mask
        return volume_mask
