"""Least-recently-used cache of slice embeddings, bounded in bytes.

Keyed by (volume fingerprint, axis, slice, model) so a new prompt on an already encoded slice costs
only the mask decoder (tens of milliseconds on a CPU) instead of the image encoder (seconds).
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from .segmenter import ImageEmbedding

DEFAULT_CACHE_BYTES = 1 << 30


def volume_fingerprint(array: np.ndarray) -> str:
    """Content hash of a voxel array: an edited volume never reuses stale embeddings."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(str((array.shape, array.dtype.str)).encode())
    digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


@dataclass(frozen=True)
class EmbeddingKey:
    volume: str
    axis: str
    index: int
    model: str


class EmbeddingCache:
    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES):
        self.max_bytes = max_bytes
        self._items: OrderedDict[EmbeddingKey, ImageEmbedding] = OrderedDict()
        self._bytes = 0
        self.hits = self.misses = 0

    def __contains__(self, key: EmbeddingKey) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: EmbeddingKey) -> ImageEmbedding | None:
        embedding = self._items.get(key)
        if embedding is None:
            self.misses += 1
            return None
        self.hits += 1
        self._items.move_to_end(key)
        return embedding

    def put(self, key: EmbeddingKey, embedding: ImageEmbedding) -> None:
        if key in self._items:
            self._bytes -= self._items.pop(key).nbytes()
        self._items[key] = embedding
        self._bytes += embedding.nbytes()
        while self._bytes > self.max_bytes and len(self._items) > 1:
            _, evicted = self._items.popitem(last=False)
            self._bytes -= evicted.nbytes()
