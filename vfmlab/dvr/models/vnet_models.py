"""VNet-based DeepDVR models (paper Table 1, Fig. 6): a volume encoder in front of one DVR unit.

- VNET4-4: VNet → RGBκ volume (pre-classified); identity TFs and decoder.
- VNETL16-4: VNetLight → 16 semantic channels; MLP colour and opacity TFs; identity decoder.
- VNETL16-17: VNetLight → 16 channels composited as latent colour; MLP opacity TF; MLP image decoder
  on the 16 channels plus alpha.

They composite with the paper's emission (``C_i = c Δt``) and κ per voxel size.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..fields import FeatureField, MLPHeads, PreClassified
from .base import SingleFieldModel, VolumeInput
from .vnet import VNet3D


@dataclass
class VNetConfig:
    base_width: int = 16  # paper: VNet's 16 (45.6 M parameters with 4 outputs)
    depth: int = 4


@dataclass
class VNetLightConfig:
    base_width: int = 16
    depth: int = 3  # "VNetLight": one level of downsampling less than VNet
    semantic_channels: int = 16
    hidden: int = 16  # MLP TF / decoder hidden width (paper: 16)


def encode(encoder: nn.Module, volume: VolumeInput) -> torch.Tensor:
    return encoder(volume.u[None, None])


class VNet44(SingleFieldModel):
    """VNET4-4: the encoder infers the (RGB, κ) volume directly."""

    emission = "dt"

    def __init__(self, config: VNetConfig):
        super().__init__()
        self.config = config
        self.encoder = VNet3D(1, 4, config.base_width, config.depth)

    def field(self, volume: VolumeInput) -> FeatureField:
        rgb_kappa = torch.sigmoid(encode(self.encoder, volume))
        return FeatureField(rgb_kappa, PreClassified(), channels=3)


class PixelDecoder(nn.Module):
    """Image decoder of VNETL16-17: per pixel MLP, channels + alpha → hidden (ReLU) → RGB (sigmoid)."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(channels + 1, hidden), nn.ReLU(), nn.Linear(hidden, 3))

    def forward(self, color: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp(torch.cat([color, alpha.unsqueeze(1)], dim=1)))


class VNetL16(SingleFieldModel):
    """VNETL16-4 (``latent_color=False``) and VNETL16-17 (``latent_color=True``)."""

    emission = "dt"

    def __init__(self, config: VNetLightConfig, latent_color: bool):
        super().__init__()
        self.config = config
        self.encoder = VNet3D(1, config.semantic_channels, config.base_width, config.depth)
        self.heads = MLPHeads(config.semantic_channels, config.hidden, color=not latent_color)
        self.channels = config.semantic_channels if latent_color else 3
        self.decoder = PixelDecoder(config.semantic_channels, config.hidden) if latent_color else None

    def field(self, volume: VolumeInput) -> FeatureField:
        return FeatureField(encode(self.encoder, volume), self.heads, self.channels)

    def decode(self, color, alpha, background):
        if self.decoder is None:
            return super().decode(color, alpha, background)
        return self.decoder(color, alpha)
