"""DVRNet (paper Fig. 5): VNet's volumetric encoder levels, each rendered by its own DVR unit into a
latent image at its own resolution, combined by a 2D U-Net decoder (the DVR units replace the skip
connections). Level ``l`` has voxels ``2**l`` times larger, renders ``H / 2**l`` x ``W / 2**l``
pixels with ``Δt * 2**l``, composites its ``w_l`` channels as latent colour with an MLP opacity TF.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from monai.networks.blocks import UnetBasicBlock
from torch import nn
from torch.nn import functional as F

from ..fields import FeatureField, MLPHeads
from ..marcher import march
from .base import DVRModel, batch_rays
from .vnet import VNetEncoder, pad_to_multiple


@dataclass
class DVRNetConfig:
    base_width: int = 16
    depth: int = 4  # encoder downsamplings; the decoder has as many upsampling steps
    hidden: int = 16  # opacity MLP hidden width


def _block(channels_in: int, channels_out: int) -> nn.Module:
    return UnetBasicBlock(2, channels_in, channels_out, kernel_size=3, stride=1, norm_name="instance")


class UpLevel(nn.Module):
    """U-Net decoder step: upsample ×2, concatenate the level's rendered image (projected), convolve."""

    def __init__(self, channels_in: int, channels_out: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(channels_in, channels_out, kernel_size=2, stride=2)
        self.conv = _block(2 * channels_out, channels_out)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        if x.shape[-2:] != skip.shape[-2:]:  # odd level sizes: match the rendered image's size
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([x, skip], dim=1))


class LevelField(FeatureField):
    """A level's feature volume sampled at full-resolution grid points (maps them onto the level's grid)."""

    def __init__(self, features, heads, channels, scale: torch.Tensor, shift: torch.Tensor):
        super().__init__(features, heads, channels)
        self.scale, self.shift = scale, shift

    def classify(self, points):
        return super().classify(points * self.scale + self.shift)


class DVRNet(DVRModel):
    emission = "dt"

    def __init__(self, config: DVRNetConfig):
        super().__init__()
        self.config = config
        self.encoder = VNetEncoder(1, config.base_width, config.depth)
        widths = self.encoder.widths
        self.heads = nn.ModuleList(MLPHeads(w, config.hidden, color=False) for w in widths)
        self.project = nn.ModuleList(_block(w + 1, w) for w in widths)
        self.up = nn.ModuleList(UpLevel(widths[l + 1], widths[l]) for l in range(config.depth))
        self.to_rgb = nn.Conv2d(widths[0], 3, kernel_size=1)

    def render(self, volume, views, width, height, options, seeds=None, anchors=None):
        """As :meth:`DVRModel.render`; ``anchors`` place the full-resolution level's samples only."""
        depth = self.config.depth
        size = volume.u.shape
        features = self.encoder(pad_to_multiple(volume.u[None, None], 2**depth))
        images = []
        for level, (level_features, heads) in enumerate(zip(features, self.heads)):
            w_l, h_l = max(1, round(width / 2**level)), max(1, round(height / 2**level))
            field = LevelField(level_features, heads, level_features.shape[1],
                               *self._level_mapping(size, level_features.shape[2:], level, volume.u))
            unit = volume.grid.voxel_size * 2**level
            settings = options.march_settings(volume.grid, self.emission, unit, level)
            rays, offsets = batch_rays(views, volume.grid, w_l, h_l, options.jitter,
                                       None if seeds is None else [s * 31 + level for s in seeds], volume.u.dtype,
                                       settings.step, anchors if level == 0 else None)
            composite = march(field, rays.to(volume.u.device), settings, offsets.to(volume.u.device))
            image = torch.cat([composite.color, composite.alpha.unsqueeze(1)], dim=1)
            images.append(image.view(len(views), h_l, w_l, -1).permute(0, 3, 1, 2))
        x = self.project[depth](images[depth])
        for level in range(depth - 1, -1, -1):
            x = self.up[level](x, self.project[level](images[level]))
        return torch.sigmoid(self.to_rgb(x))

    @staticmethod
    def _level_mapping(size, level_size, level: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Affine map (per x, y, z) from full-resolution grid coordinates to the level's grid coordinates.

        A level-``l`` voxel ``v`` (stride-2 convolutions with kernel 2) covers full-resolution voxels
        ``2^l v .. 2^l (v + 1) - 1``: its centre is at index ``2^l v + (2^l - 1) / 2``.
        """
        factor = 2.0**level
        scale, shift = [], []
        for n, n_level in zip(reversed(size), reversed(level_size)):  # I, J, K order = x, y, z
            # full grid g -> index x = (g + 1)(n - 1)/2 -> level index y = (x - (f - 1)/2)/f -> g_l
            a = (n - 1) / 2 / factor
            b = ((n - 1) / 2 - (factor - 1) / 2) / factor
            denominator = max(n_level - 1, 1) / 2
            scale.append(a / denominator)
            shift.append(b / denominator - 1.0)
        return (torch.tensor(scale, dtype=like.dtype, device=like.device),
                torch.tensor(shift, dtype=like.dtype, device=like.device))
