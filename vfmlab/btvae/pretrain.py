"""Stage 1 objectives, without labels: each wraps a segmenter and maps a batch of images to its loss.

Both see the same two views (the image rotated 90° left and right) through one weight-shared
encoder. BT-VAE compares the views' latent Gaussians (μ, σ) without sampling z; BT-U-Net uses the
standard Barlow Twins recipe on the U-Net bottleneck (global pooling → projector MLP).
"""
from __future__ import annotations

import torch
from torch import nn

from .config import PretrainConfig
from .losses import LossParts, barlow_twins_loss, bt_vae_loss, rotated_views
from .unet import UNetSegmenter
from .vae import VAESegmenter


class BTVAEPretrainer(nn.Module):
    """L_bt = L_kl + L_μ on the VAE encoder's (μ, log σ²) of both views; the decoder is not used."""

    def __init__(self, segmenter: VAESegmenter, config: PretrainConfig):
        super().__init__()
        self.segmenter = segmenter
        self.config = config

    def forward(self, images: torch.Tensor) -> LossParts:
        """(B, C_in, S, S) images → L_bt."""
        left, right = rotated_views(images)
        mu, logvar = self.segmenter.encoder(torch.cat([left, right]))
        half = images.shape[0]
        return bt_vae_loss(mu[:half], logvar[:half], mu[half:], logvar[half:], self.config)


class BarlowTwinsUNetPretrainer(nn.Module):
    """Standard Barlow Twins on the U-Net encoder: pooled bottleneck → projector → cross-correlation.

    The projector only exists for stage 1 and is dropped afterwards, as in Zbontar et al.
    """

    def __init__(self, segmenter: UNetSegmenter, config: PretrainConfig):
        super().__init__()
        self.segmenter = segmenter
        self.config = config
        dims = [segmenter.config.widths[-1], *config.projector_dims]
        layers: list[nn.Module] = []
        for index, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(d_in, d_out, bias=index == len(dims) - 2))
            if index < len(dims) - 2:
                layers += [nn.BatchNorm1d(d_out), nn.ReLU(inplace=True)]
        self.projector = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> LossParts:
        left, right = rotated_views(images)
        pooled = self.segmenter.features(torch.cat([left, right])).mean(dim=(-2, -1))
        half = images.shape[0]
        # Each view through the projector on its own: its BatchNorm must not mix the two views' statistics.
        loss = barlow_twins_loss(
            self.projector(pooled[:half]), self.projector(pooled[half:]), self.config.lambda_offdiag
        )
        return LossParts(loss, {"barlow_twins": loss})


def build_pretrainer(spec_pretraining: str, segmenter: nn.Module, config: PretrainConfig) -> nn.Module:
    if spec_pretraining == "bt-vae":
        return BTVAEPretrainer(segmenter, config)
    if spec_pretraining == "barlow-twins":
        return BarlowTwinsUNetPretrainer(segmenter, config)
    raise ValueError(f"unknown pretraining {spec_pretraining!r}")
