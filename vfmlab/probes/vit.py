"""DINO and CLIP probes on timm's ``VisionTransformer``: the last block's CLS attention, per head.

The model is built with ``pretrained=False`` and the architecture the state dict describes (width,
depth, patch and grid read from its tensors; heads = width / 64 as in both DINO and OpenAI CLIP), then
loaded from the official checkpoint converted by timm's ``checkpoint_filter_fn`` (which turns OpenAI's
CLIP layout into timm's). ``dynamic_img_size=True`` interpolates the position embeddings to any input.
The attention probabilities are read from a forward hook on the last block's ``attn_drop`` with fused
attention switched off for that block, so the rest of the network keeps its fast path.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import WeightsError
from .base import AttentionMaps, AttentionProbe, check_rgb

HEAD_DIM = 64  # DINO's and OpenAI CLIP's ViTs all use 64 channels per head


@dataclass(frozen=True)
class ViTConfig:
    """The architecture of a ViT checkpoint, in timm's terms."""

    timm_name: str
    embed_dim: int
    depth: int
    patch_size: int
    img_size: int
    quick_gelu: bool = False

    @property
    def num_heads(self) -> int:
        return max(1, self.embed_dim // HEAD_DIM)


def _depth(state_dict: dict, pattern: str) -> int:
    indices = {int(m.group(1)) for k in state_dict if (m := re.match(pattern, k))}
    if not indices:
        raise WeightsError("the checkpoint has no transformer blocks")
    return max(indices) + 1


def dino_config(timm_name: str, state_dict: dict) -> ViTConfig:
    """Config of a DINO backbone checkpoint (``cls_token``, ``pos_embed``, ``blocks.N.*``, ``norm.*``)."""
    patch = state_dict["patch_embed.proj.weight"]
    grid = int(round((state_dict["pos_embed"].shape[1] - 1) ** 0.5))
    return ViTConfig(timm_name, int(patch.shape[0]), _depth(state_dict, r"blocks\.(\d+)\."),
                     int(patch.shape[-1]), grid * int(patch.shape[-1]))


def openai_clip_config(timm_name: str, state_dict: dict) -> ViTConfig:
    """Config of OpenAI CLIP's image tower (``visual.conv1``, ``visual.transformer.resblocks.N.*``)."""
    conv = state_dict["visual.conv1.weight"]
    grid = int(round((state_dict["visual.positional_embedding"].shape[0] - 1) ** 0.5))
    return ViTConfig(timm_name, int(conv.shape[0]), _depth(state_dict, r"visual\.transformer\.resblocks\.(\d+)\."),
                     int(conv.shape[-1]), grid * int(conv.shape[-1]), quick_gelu=True)


def build_vit(config: ViTConfig, state_dict: dict) -> torch.nn.Module:
    """timm ViT of ``config`` holding ``state_dict``'s weights (projection heads dropped: image features only)."""
    import timm
    from timm.models.vision_transformer import checkpoint_filter_fn

    extra = {"act_layer": "quick_gelu"} if config.quick_gelu else {}
    model = timm.create_model(
        config.timm_name, pretrained=False, num_classes=0, dynamic_img_size=True, embed_dim=config.embed_dim,
        depth=config.depth, num_heads=config.num_heads, patch_size=config.patch_size, img_size=config.img_size,
        **extra,
    )
    converted = checkpoint_filter_fn(state_dict, model)
    converted = {k: v for k, v in converted.items() if not k.startswith("head.")}
    try:
        model.load_state_dict(converted, strict=True)
    except RuntimeError as error:
        raise WeightsError(f"the checkpoint does not fit {config.timm_name}: {str(error).splitlines()[0]}") from None
    return model.eval()


class ViTAttentionProbe(AttentionProbe):
    """CLS-token attention of the last block; ``input_size`` None keeps the capture's size (cut to whole patches)."""

    mode = "cls"

    def __init__(self, name: str, model: torch.nn.Module, input_size: int | None = None):
        self.name = name
        self.model = model.eval()
        self.patch = int(model.patch_embed.patch_size[0])
        self.input_size = input_size
        self.mean = torch.tensor(model.pretrained_cfg["mean"]).view(1, 3, 1, 1)
        self.std = torch.tensor(model.pretrained_cfg["std"]).view(1, 3, 1, 1)
        self.attention_module = model.blocks[-1].attn
        self.attention_module.fused_attn = False  # the hook needs the explicit softmax

    def _input(self, rgb: np.ndarray) -> torch.Tensor:
        height, width = rgb.shape[:2]
        if self.input_size:
            size = (self.input_size, self.input_size)
        else:
            size = tuple(max(self.patch, side // self.patch * self.patch) for side in (height, width))
        x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255.0
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bicubic", align_corners=False).clamp(0, 1)
        return (x - self.mean) / self.std

    def attention(self, rgb: np.ndarray) -> AttentionMaps:
        rgb = check_rgb(rgb)
        x = self._input(rgb)
        captured: list[torch.Tensor] = []
        hook = self.attention_module.attn_drop.register_forward_hook(lambda module, args, out: captured.append(out))
        try:
            with torch.inference_mode():
                self.model.forward_features(x)
        finally:
            hook.remove()
        attention = captured[-1][0]  # (heads, tokens, tokens), rows sum to 1
        grid = (x.shape[-2] // self.patch, x.shape[-1] // self.patch)
        cls = attention[:, 0, self.model.num_prefix_tokens:]
        return AttentionMaps(self.name, cls.reshape(-1, *grid).numpy(), self.mode, rgb.shape[:2],
                             tuple(x.shape[-2:]), f"blocks.{len(self.model.blocks) - 1}.attn")

    def plain_forward(self, rgb: np.ndarray) -> None:
        self.attention_module.fused_attn = True
        try:
            with torch.inference_mode():
                self.model.forward_features(self._input(check_rgb(rgb)))
        finally:
            self.attention_module.fused_attn = False
