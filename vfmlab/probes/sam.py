"""SAM's ViT image encoder (segment_anything): mean attention each patch receives in the last global block.

SAM has no CLS token. Its last global-attention block attends over the whole padded 1024 x 1024 input;
the map keeps the patches of the image (not the padding) and averages, per head, the attention they
receive from the image's patches. segment_anything computes the softmax inline (no module to hook), so
a forward pre-hook takes the block's input and recomputes the probabilities with the block's own
weights and segment_anything's ``add_decomposed_rel_pos``, one head at a time (a full ViT-B map is
12 x 4096 x 4096 floats).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import WeightsError
from .base import AttentionMaps, AttentionProbe, check_rgb

PREFIX = "image_encoder."
# segment_anything's build_sam: pixel mean and std of the normalisation in Sam.preprocess.
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class SamEncoderConfig:
    """ImageEncoderViT arguments, read from a checkpoint's tensors."""

    img_size: int
    patch_size: int
    embed_dim: int
    depth: int
    num_heads: int
    window_size: int
    global_attn_indexes: tuple[int, ...]
    out_chans: int


def sam_encoder_config(state_dict: dict) -> SamEncoderConfig:
    """Config of a SAM checkpoint: global blocks are those whose relative positions span the whole grid."""
    patch = state_dict[PREFIX + "patch_embed.proj.weight"]
    grid = int(state_dict[PREFIX + "pos_embed"].shape[1])
    depth = 1 + max(int(m.group(1)) for k in state_dict if (m := re.match(r"image_encoder\.blocks\.(\d+)\.", k)))
    spans = [int(state_dict[f"{PREFIX}blocks.{i}.attn.rel_pos_h"].shape[0]) for i in range(depth)]
    head_dim = int(state_dict[f"{PREFIX}blocks.0.attn.rel_pos_h"].shape[1])
    global_blocks = tuple(i for i, span in enumerate(spans) if span == 2 * grid - 1)
    windowed = [span for span in spans if span != 2 * grid - 1]
    if not global_blocks:
        raise WeightsError("the SAM checkpoint has no global-attention block")
    return SamEncoderConfig(
        img_size=grid * int(patch.shape[-1]), patch_size=int(patch.shape[-1]), embed_dim=int(patch.shape[0]),
        depth=depth, num_heads=int(patch.shape[0]) // head_dim,
        window_size=(windowed[0] + 1) // 2 if windowed else 0, global_attn_indexes=global_blocks,
        out_chans=int(state_dict[PREFIX + "neck.0.weight"].shape[0]),
    )


def build_sam_encoder(state_dict: dict) -> torch.nn.Module:
    """segment_anything's ``ImageEncoderViT`` as ``build_sam`` makes it, holding the checkpoint's encoder."""
    from segment_anything.modeling import ImageEncoderViT

    config = sam_encoder_config(state_dict)
    encoder = ImageEncoderViT(
        img_size=config.img_size, patch_size=config.patch_size, embed_dim=config.embed_dim, depth=config.depth,
        num_heads=config.num_heads, mlp_ratio=4, out_chans=config.out_chans, qkv_bias=True,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_rel_pos=True, window_size=config.window_size,
        global_attn_indexes=config.global_attn_indexes,
    )
    weights = {k[len(PREFIX):]: v for k, v in state_dict.items() if k.startswith(PREFIX)}
    try:
        encoder.load_state_dict(weights, strict=True)
    except RuntimeError as error:
        raise WeightsError(f"the checkpoint does not fit SAM's image encoder: {str(error).splitlines()[0]}") from None
    return encoder.eval()


def head_probabilities(attention, x: torch.Tensor, head: int) -> torch.Tensor:
    """Softmax attention ``(B, H*W, H*W)`` of one head of a segment_anything ``Attention`` on input ``(B, H, W, C)``.

    The same arithmetic as ``Attention.forward``, restricted to one head.
    """
    from segment_anything.modeling.image_encoder import add_decomposed_rel_pos

    batch, height, width, _ = x.shape
    qkv = attention.qkv(x).reshape(batch, height * width, 3, attention.num_heads, -1)
    q, k = qkv[:, :, 0, head], qkv[:, :, 1, head]
    logits = (q * attention.scale) @ k.transpose(-2, -1)
    if attention.use_rel_pos:
        logits = add_decomposed_rel_pos(logits, q, attention.rel_pos_h, attention.rel_pos_w,
                                        (height, width), (height, width))
    return logits.softmax(dim=-1)


def mean_received(attention, x: torch.Tensor, valid: tuple[int, int]) -> torch.Tensor:
    """``(heads, h, w)``: attention each valid patch receives, averaged over the valid patches as queries."""
    _, height, width, _ = x.shape
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    inside = ((rows < valid[0]) & (cols < valid[1])).flatten()
    maps = []
    for head in range(attention.num_heads):
        probabilities = head_probabilities(attention, x[:1], head)[0]
        if not inside.all():  # a non-square image: padding rows or columns to leave out
            probabilities = probabilities[inside][:, inside]
        maps.append(probabilities.mean(dim=0).reshape(valid))
    return torch.stack(maps)


class SamAttentionProbe(AttentionProbe):
    """Mean received attention in the last global block of SAM's image encoder."""

    mode = "mean_received"

    def __init__(self, name: str, encoder: torch.nn.Module):
        from segment_anything.utils.transforms import ResizeLongestSide

        self.name = name
        self.encoder = encoder.eval()
        self.block_index = max(i for i, block in enumerate(encoder.blocks) if block.window_size == 0)
        self.resize = ResizeLongestSide(encoder.img_size)
        self.patch = int(encoder.patch_embed.proj.kernel_size[0])

    def _input(self, rgb: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        """Resized (longest side = img_size), normalised and padded input, plus the resized size (H, W)."""
        resized = self.resize.apply_image(rgb)
        x = torch.from_numpy(resized).permute(2, 0, 1)[None].float()
        x = (x - torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1)) / torch.tensor(PIXEL_STD).view(1, 3, 1, 1)
        size = self.encoder.img_size
        return F.pad(x, (0, size - x.shape[-1], 0, size - x.shape[-2])), tuple(resized.shape[:2])

    def attention(self, rgb: np.ndarray) -> AttentionMaps:
        rgb = check_rgb(rgb)
        x, resized = self._input(rgb)
        valid = (-(-resized[0] // self.patch), -(-resized[1] // self.patch))  # patches touching the image
        attention = self.encoder.blocks[self.block_index].attn
        maps: list[torch.Tensor] = []

        def read(module, args):
            maps.append(mean_received(module, args[0], valid))

        hook = attention.register_forward_pre_hook(read)
        try:
            with torch.inference_mode():
                self.encoder(x)
        finally:
            hook.remove()
        return AttentionMaps(self.name, maps[-1].numpy(), self.mode, rgb.shape[:2], resized,
                             f"blocks.{self.block_index}.attn")

    def plain_forward(self, rgb: np.ndarray) -> None:
        with torch.inference_mode():
            self.encoder(self._input(check_rgb(rgb))[0])
