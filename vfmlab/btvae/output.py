"""What every segmenter returns, so training and inference treat U-Nets and VAEs alike."""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch


class SegmenterOutput(NamedTuple):
    """``logits`` (B, 1, S, S) mask logits; ``mu``/``logvar`` (B, C, s, s) the latent Gaussian (VAEs only)."""

    logits: torch.Tensor
    mu: Optional[torch.Tensor] = None
    logvar: Optional[torch.Tensor] = None
