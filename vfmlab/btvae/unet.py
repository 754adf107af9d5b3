"""monai's UNet as a segmenter, and its down path: the encoder every model of this package shares."""
from __future__ import annotations

import torch
from monai.networks.layers.simplelayers import SkipConnection
from monai.networks.nets import UNet
from torch import nn

from .config import ModelConfig
from .output import SegmenterOutput


def build_unet(config: ModelConfig) -> UNet:
    """monai UNet with one halving per level after the first: (B, C_in, S, S) → (B, 1, S, S) logits."""
    config.validate()
    return UNet(
        spatial_dims=2,
        in_channels=config.in_channels,
        out_channels=1,
        channels=tuple(config.widths),
        strides=(2,) * (len(config.widths) - 1),
        num_res_units=config.num_res_units,
        norm=config.norm,
    )


def down_path(unet: UNet) -> list[nn.Module]:
    """The UNet's encoder layers in order, ending with the bottom layer (the same module objects).

    monai builds the network recursively as ``Sequential(down, SkipConnection(inner), up)`` with the
    bottom layer innermost, and has no accessor for the encoder half; this walks that structure.
    """
    layers: list[nn.Module] = []
    block: nn.Module = unet.model
    while isinstance(block, nn.Sequential) and len(block) == 3 and isinstance(block[1], SkipConnection):
        layers.append(block[0])
        block = block[1].submodule
    layers.append(block)
    return layers


class UNetSegmenter(nn.Module):
    """Deterministic baseline (``unet``; ``bt-unet`` after Barlow Twins pretraining of :meth:`features`)."""

    probabilistic = False

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.unet = build_unet(config)

    def forward(self, image: torch.Tensor, sample: bool = True) -> SegmenterOutput:
        """(B, C_in, S, S) → logits (B, 1, S, S); ``sample`` is accepted for a uniform call and ignored."""
        return SegmenterOutput(self.unet(image))

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """Bottleneck features (B, widths[-1], s, s) through the encoder half only (no skips needed)."""
        for layer in down_path(self.unet):
            image = layer(image)
        return image
