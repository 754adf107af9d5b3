"""What every attention probe returns, and the interface the five models implement.

The paper's read-out (after DINO's ``visualize_attention.py``): the last layer's multi-head attention,
per head. Models with a CLS token (DINO, CLIP) give the CLS token's attention to every patch
(``mode="cls"``); SAM's and LiteMedSAM's encoders have none, so each patch gets the mean attention it
receives from the other patches (``mode="mean_received"``).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from ..errors import InputError

MODES = ("cls", "mean_received")


@dataclass
class AttentionMaps:
    """Per-head attention over the capture, on the model's patch grid.

    ``heads`` is ``(n_heads, h, w)`` float32 covering exactly the capture (padding cropped away);
    one cell spans ``image_size / (h, w)`` capture pixels.
    """

    model: str
    heads: np.ndarray
    mode: str
    image_size: tuple[int, int]  # (H, W) of the capture
    input_size: tuple[int, int]  # (H, W) the model saw, before padding
    layer: str  # which attention module was read
    features: np.ndarray | None = None  # ``(D,)`` the encoder's output averaged over the image, when the probe has one

    def __post_init__(self) -> None:
        self.heads = np.asarray(self.heads, dtype=np.float32)
        if self.heads.ndim != 3:
            raise InputError(f"attention maps must be (heads, h, w), got shape {self.heads.shape}")
        if self.mode not in MODES:
            raise InputError(f"attention mode must be one of {MODES}, got '{self.mode}'")

    @property
    def grid(self) -> tuple[int, int]:
        return int(self.heads.shape[1]), int(self.heads.shape[2])

    @property
    def n_heads(self) -> int:
        return int(self.heads.shape[0])

    @property
    def mean(self) -> np.ndarray:
        """``(h, w)`` average over heads."""
        return self.heads.mean(axis=0)

    def at_image_resolution(self, maps: np.ndarray | None = None) -> np.ndarray:
        """``(n, H, W)`` maps (default: the heads) on the capture's pixels, each cell repeated (nearest)."""
        from .maps import upsample

        return upsample(self.heads if maps is None else maps, self.image_size)

    def info(self) -> dict:
        return {"model": self.model, "mode": self.mode, "heads": self.n_heads, "grid": list(self.grid),
                "image_size": list(self.image_size), "input_size": list(self.input_size), "layer": self.layer}


class AttentionProbe(ABC):
    """A pretrained image encoder with its last-layer attention read out. ``torch`` is imported by subclasses."""

    name: str
    mode: str

    @abstractmethod
    def attention(self, rgb: np.ndarray) -> AttentionMaps:
        """Attention maps of one ``(H, W, 3)`` uint8 capture."""

    @abstractmethod
    def plain_forward(self, rgb: np.ndarray) -> None:
        """The encoder's own forward on the same input, without reading attention (benchmark reference)."""


def check_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise InputError(f"a capture must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    if min(rgb.shape[:2]) < 16:
        raise InputError(f"a capture of {rgb.shape[1]}x{rgb.shape[0]} pixels is too small to probe")
    return rgb
