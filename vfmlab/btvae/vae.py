"""The VAE segmenter: U-Net encoder → latent Gaussian (μ, log σ²) → sampled z → decoder → mask logits."""
from __future__ import annotations

import torch
from monai.networks.blocks import Convolution, ResidualUnit
from torch import nn

from .config import ModelConfig
from .output import SegmenterOutput
from .unet import build_unet, down_path


class VAEEncoder(nn.Module):
    """(B, C_in, S, S) → μ, log σ² each (B, latent_channels, s, s), s = ``config.latent_size``.

    The layers are the down path of a monai UNet built from the same config, so the VAE and the
    U-Net baselines encode with identical architectures; 1×1 convolutions then give μ and log σ².
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.logvar_limit = config.logvar_limit
        self.down = nn.Sequential(*down_path(build_unet(config)))
        self.mu = nn.Conv2d(config.widths[-1], config.latent_channels, kernel_size=1)
        self.logvar = nn.Conv2d(config.widths[-1], config.latent_channels, kernel_size=1)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.down(image)
        logvar = self.logvar(features).clamp(-self.logvar_limit, self.logvar_limit)
        return self.mu(features), logvar


class MaskDecoder(nn.Module):
    """z (B, latent_channels, s, s) → mask logits (B, 1, S, S).

    Mirrors monai UNet's up layers (transposed conv + residual unit per level) without skip
    connections: skips would let image detail bypass the latent and make the model deterministic.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        widths = list(config.widths)
        self.stem = nn.Conv2d(config.latent_channels, widths[-1], kernel_size=1)
        layers = []
        for in_ch, out_ch in zip(widths[:0:-1], widths[-2::-1]):
            layers.append(
                nn.Sequential(
                    Convolution(2, in_ch, out_ch, strides=2, kernel_size=3, norm=config.norm, is_transposed=True),
                    ResidualUnit(2, out_ch, out_ch, strides=1, kernel_size=3, subunits=1, norm=config.norm),
                )
            )
        self.up = nn.Sequential(*layers)
        self.head = nn.Conv2d(widths[0], 1, kernel_size=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.up(self.stem(z)))


class VAESegmenter(nn.Module):
    """``btvae`` (after stage 1) and ``vae``: (B, C_in, S, S) → logits (B, 1, S, S), μ, log σ²."""

    probabilistic = True

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.encoder = VAEEncoder(config)
        self.decoder = MaskDecoder(config)

    def forward(self, image: torch.Tensor, sample: bool = True) -> SegmenterOutput:
        """``sample``: z = μ + σ·ε (reparameterised); otherwise z = μ."""
        mu, logvar = self.encoder(image)
        z = reparameterize(mu, logvar) if sample else mu
        return SegmenterOutput(self.decoder(z), mu, logvar)

    def decode_samples(self, mu: torch.Tensor, logvar: torch.Tensor, n_samples: int) -> torch.Tensor:
        """Mask probabilities (n_samples, B, 1, S, S) from ``n_samples`` draws of z, encoding once."""
        return torch.stack([torch.sigmoid(self.decoder(reparameterize(mu, logvar))) for _ in range(n_samples)])


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
