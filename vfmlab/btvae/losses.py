"""Losses: BT-VAE's Barlow Twins on latent Gaussians (L_bt = L_kl + L_μ), the standard Barlow Twins
loss, and the fine-tuning loss α·Dice + (1 − α)·BCE (monai DiceCELoss) + KL to N(0, I).

The Barlow Twins and channel-pair KL terms are written here by hand: monai, timm and torch have no
Barlow Twins loss, and no library forms a KL matrix between every pair of latent channels.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from monai.losses import DiceCELoss
from torch import nn

from .config import FinetuneConfig, PretrainConfig


class LossParts(NamedTuple):
    total: torch.Tensor
    parts: dict[str, torch.Tensor]


def gaussian_kl_matrix(mu1: torch.Tensor, var1: torch.Tensor, mu2: torch.Tensor, var2: torch.Tensor) -> torch.Tensor:
    """C[i, j] = mean over samples n of KL(N(mu1[n, i], var1[n, i]) ‖ N(mu2[n, j], var2[n, j])).

    Inputs (N, C); output (C, C). KL(N(a, s²) ‖ N(b, t²)) = ½ [log t² − log s² + (s² + (a − b)²) / t² − 1];
    expanding (a − b)² turns the mean over n into matrix products, O(N·C²) time and O(C²) memory
    instead of an (N, C, C) tensor (1024 channels × 1024 positions would need 4 GiB).
    """
    n = mu1.shape[0]
    inv2 = 1.0 / var2
    log_term = torch.log(var2).mean(0)[None, :] - torch.log(var1).mean(0)[:, None]
    quad = ((var1 + mu1**2).T @ inv2 - 2.0 * mu1.T @ (mu2 * inv2)) / n + (mu2**2 * inv2).mean(0)[None, :]
    return 0.5 * (log_term + quad - 1.0)


def kl_redundancy_loss(kl: torch.Tensor, tau: float) -> torch.Tensor:
    """L_kl = Σ_i C_ii² + Σ_i Σ_{j≠i} (C_ij − τ)²: same channel of both views alike, different ones τ apart."""
    off_diagonal = ~torch.eye(kl.shape[0], dtype=torch.bool, device=kl.device)
    return (torch.diagonal(kl) ** 2).sum() + ((kl[off_diagonal] - tau) ** 2).sum()


def cross_correlation(z1: torch.Tensor, z2: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """(D, D) cross-correlation of (N, D) embeddings, each column standardised over the N samples.

    Standardisation is BatchNorm1d's in training mode without affine (biased variance + eps), as in
    Zbontar et al.'s reference implementation.
    """
    def standardise(z: torch.Tensor) -> torch.Tensor:
        return (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + eps)

    return standardise(z1).T @ standardise(z2) / z1.shape[0]


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, lambda_offdiag: float) -> torch.Tensor:
    """Standard Barlow Twins: Σ_i (1 − C_ii)² + λ Σ_i Σ_{j≠i} C_ij² on the cross-correlation C of (N, D) inputs."""
    c = cross_correlation(z1, z2)
    diagonal = torch.diagonal(c)
    return ((1.0 - diagonal) ** 2).sum() + lambda_offdiag * ((c**2).sum() - (diagonal**2).sum())


def rotated_views(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The two stage-1 views of (B, C, S, S) images: rotated 90° left (counter-clockwise) and right."""
    return torch.rot90(image, 1, dims=(-2, -1)), torch.rot90(image, -1, dims=(-2, -1))


def pair_latents(
    mu1: torch.Tensor, logvar1: torch.Tensor, mu2: torch.Tensor, logvar2: torch.Tensor, pairing: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Latent maps (B, C, s, s) of the left and right views → (mu1, var1, mu2, var2), each (N, C).

    ``aligned``: each map is rotated back to the image's orientation and every (image, position) is
    a sample, N = B·s². ``pooled``: each channel map becomes its moment-matched Gaussian, N = B.
    See :class:`~vfmlab.btvae.config.PretrainConfig`.
    """
    var1, var2 = torch.exp(logvar1), torch.exp(logvar2)
    if pairing == "aligned":
        # View 1 was turned left (k=+1) and view 2 right (k=-1); undo each on its latent map.
        maps = [torch.rot90(t, -1, dims=(-2, -1)) for t in (mu1, var1)]
        maps += [torch.rot90(t, 1, dims=(-2, -1)) for t in (mu2, var2)]
        return tuple(t.permute(0, 2, 3, 1).reshape(-1, t.shape[1]) for t in maps)  # type: ignore[return-value]
    if pairing == "pooled":
        out = []
        for mu, var in ((mu1, var1), (mu2, var2)):
            flat_mu, flat_var = mu.flatten(2), var.flatten(2)
            out += [flat_mu.mean(-1), flat_var.mean(-1) + flat_mu.var(-1, unbiased=False)]
        return tuple(out)  # type: ignore[return-value]
    raise ValueError(f"unknown latent pairing {pairing!r}")


def bt_vae_loss(
    mu1: torch.Tensor, logvar1: torch.Tensor, mu2: torch.Tensor, logvar2: torch.Tensor, config: PretrainConfig
) -> LossParts:
    """L_bt = L_kl + L_μ on the latent Gaussians of the two views (no sampling of z)."""
    m1, v1, m2, v2 = pair_latents(mu1, logvar1, mu2, logvar2, config.latent_pairing)
    l_kl = kl_redundancy_loss(gaussian_kl_matrix(m1, v1, m2, v2), config.tau)
    l_mu = barlow_twins_loss(m1, m2, config.lambda_offdiag)
    return LossParts(l_kl + l_mu, {"l_kl": l_kl, "l_mu": l_mu})


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Mean over latent elements of KL(N(μ, σ²) ‖ N(0, 1)) = ½ (μ² + σ² − 1 − log σ²)."""
    return 0.5 * (mu**2 + torch.exp(logvar) - 1.0 - logvar).mean()


class SegmentationLoss(nn.Module):
    """Stage 2: α·Dice + (1 − α)·BCE on mask logits (monai DiceCELoss), plus ``kl_weight``·KL for VAEs."""

    def __init__(self, config: FinetuneConfig):
        super().__init__()
        self.kl_weight = config.kl_weight
        # sigmoid + one channel: monai uses BCE-with-logits for the CE term.
        self.dice_bce = DiceCELoss(
            sigmoid=True, batch=config.dice_batch, lambda_dice=config.alpha, lambda_ce=1.0 - config.alpha
        )

    def forward(self, logits: torch.Tensor, target: torch.Tensor, mu=None, logvar=None) -> LossParts:
        seg = self.dice_bce(logits, target)
        if mu is None:
            return LossParts(seg, {"dice_bce": seg})
        kl = kl_to_standard_normal(mu, logvar)
        return LossParts(seg + self.kl_weight * kl, {"dice_bce": seg, "kl": kl})
