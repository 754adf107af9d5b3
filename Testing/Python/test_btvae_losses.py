"""BT-VAE losses and metrics on tiny tensors whose values are computed by hand in the comments."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vfmlab.btvae.config import FinetuneConfig, PretrainConfig
from vfmlab.btvae.losses import (
    SegmentationLoss,
    barlow_twins_loss,
    bt_vae_loss,
    gaussian_kl_matrix,
    kl_redundancy_loss,
    kl_to_standard_normal,
    pair_latents,
    rotated_views,
)
from vfmlab.btvae.metrics import slice_stack_metrics


def test_kl_matrix_matches_hand_values():
    # One sample, two channels. View 1: N(0, 1), N(1, 1). View 2: N(0, 1), N(1, 4).
    # KL(N(a, s²) ‖ N(b, t²)) = ½ [ln(t²/s²) + (s² + (a − b)²)/t² − 1]
    mu1, var1 = torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 1.0]])
    mu2, var2 = torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 4.0]])
    expected = torch.tensor([
        [0.0, 0.5 * (math.log(4) + (1 + 1) / 4 - 1)],  # ch0 vs ch0; ch0 vs N(1, 4)
        [0.5 * ((1 + 1) / 1 - 1), 0.5 * (math.log(4) + 1 / 4 - 1)],  # N(1,1) vs N(0,1); N(1,1) vs N(1,4)
    ])
    torch.testing.assert_close(gaussian_kl_matrix(mu1, var1, mu2, var2), expected)
    # L_kl = Σ C_ii² + Σ_{i≠j} (C_ij − τ)²; with τ = 0.5: 0 + 0.318147² + (0.443147 − 0.5)² + (0.5 − 0.5)²
    loss = kl_redundancy_loss(expected, tau=0.5)
    assert float(loss) == pytest.approx(0.318147**2 + (0.443147 - 0.5) ** 2, abs=1e-5)


def test_kl_matrix_equals_torch_distributions_on_many_samples():
    generator = torch.Generator().manual_seed(0)
    mu1, mu2 = torch.randn(50, 6, generator=generator), torch.randn(50, 6, generator=generator)
    var1, var2 = torch.rand(50, 6, generator=generator) + 0.1, torch.rand(50, 6, generator=generator) + 0.1
    reference = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu1[:, :, None], var1[:, :, None].sqrt()),
        torch.distributions.Normal(mu2[:, None, :], var2[:, None, :].sqrt()),
    ).mean(0)
    torch.testing.assert_close(gaussian_kl_matrix(mu1, var1, mu2, var2), reference, atol=1e-4, rtol=1e-4)


def test_barlow_twins_loss_matches_hand_value():
    # Columns already standardised (mean 0, variance 1 over the 2 samples).
    z1 = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
    z2 = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
    # C = z1ᵀ z2 / 2 = [[1, -1], [1, -1]] → (1 − 1)² + (1 − (−1))² + λ((−1)² + 1²) = 4 + 2λ
    assert float(barlow_twins_loss(z1, z2, lambda_offdiag=0.2)) == pytest.approx(4.4, rel=1e-4)
    # z2 with itself: C = [[1, -1], [-1, 1]] → 0 + λ·2 = 0.4
    assert float(barlow_twins_loss(z2, z2, 0.2)) == pytest.approx(0.4, rel=1e-4)
    # Identical, decorrelated embeddings are the optimum (C = I): loss 0.
    decorrelated = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    assert float(barlow_twins_loss(decorrelated, decorrelated, 0.2)) == pytest.approx(0.0, abs=1e-4)


def test_kl_to_standard_normal_matches_hand_value():
    # ½(μ² + σ² − 1 − ln σ²): μ=1, σ²=1 → 0.5; μ=0, σ²=2 → ½(1 − ln 2); mean of the two
    mu = torch.tensor([1.0, 0.0])
    logvar = torch.tensor([0.0, math.log(2.0)])
    assert float(kl_to_standard_normal(mu, logvar)) == pytest.approx((0.5 + 0.5 * (1 - math.log(2))) / 2, rel=1e-6)


def test_segmentation_loss_is_alpha_dice_plus_bce():
    logits = torch.zeros(1, 1, 2, 2)  # p = 0.5 everywhere
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    # Dice = 1 − (2·0.5 + ε)/(2 + 1 + ε) (monai's ε = 1e-5); BCE = ln 2
    dice = 1 - (1.0 + 1e-5) / (3.0 + 1e-5)
    loss = SegmentationLoss(FinetuneConfig(alpha=0.99, kl_weight=0.1))
    plain = loss(logits, target)
    assert float(plain.total) == pytest.approx(0.99 * dice + 0.01 * math.log(2), rel=1e-5)
    # + kl_weight · KL: μ = 1, σ² = 1 → KL 0.5 → + 0.05
    with_kl = loss(logits, target, torch.ones(1, 1, 1, 1), torch.zeros(1, 1, 1, 1))
    assert float(with_kl.total) == pytest.approx(float(plain.total) + 0.05, rel=1e-5)


def test_views_are_left_and_right_rotations_and_aligned_pairing_undoes_them():
    image = torch.arange(4.0).reshape(1, 1, 2, 2)  # [[0, 1], [2, 3]]
    left, right = rotated_views(image)
    assert left[0, 0].tolist() == [[1.0, 3.0], [0.0, 2.0]]  # 90° counter-clockwise
    assert right[0, 0].tolist() == [[2.0, 0.0], [3.0, 1.0]]  # 90° clockwise
    # A perfectly rotation-equivariant encoder gives latents that are rotated copies of one map:
    # after alignment every position pairs with itself, so the diagonal KL is exactly 0.
    latent = torch.randn(2, 3, 4, 4)
    logvar = torch.zeros(2, 3, 4, 4)
    mu1, var1, mu2, var2 = pair_latents(torch.rot90(latent, 1, (-2, -1)), logvar, torch.rot90(latent, -1, (-2, -1)),
                                        logvar, "aligned")
    assert mu1.shape == (2 * 16, 3)
    torch.testing.assert_close(mu1, mu2)
    assert torch.diagonal(gaussian_kl_matrix(mu1, var1, mu2, var2)).abs().max() < 1e-5


def test_pooled_pairing_is_the_moment_matched_gaussian():
    mu = torch.tensor([[[[0.0, 2.0]]]])  # one image, one channel, 1×2 map
    logvar = torch.zeros_like(mu)  # σ² = 1
    mu1, var1, _, _ = pair_latents(mu, logvar, mu, logvar, "pooled")
    # mean of μ = 1; mean σ² + spatial variance of μ = 1 + 1
    assert mu1.tolist() == [[1.0]] and var1.tolist() == [[2.0]]


def test_bt_vae_loss_is_kl_term_plus_mean_term():
    generator = torch.Generator().manual_seed(1)
    mu1, mu2 = torch.randn(4, 5, 2, 2, generator=generator), torch.randn(4, 5, 2, 2, generator=generator)
    lv1, lv2 = torch.randn(4, 5, 2, 2, generator=generator) * 0.1, torch.randn(4, 5, 2, 2, generator=generator) * 0.1
    config = PretrainConfig(tau=1.0, lambda_offdiag=0.2)
    parts = bt_vae_loss(mu1, lv1, mu2, lv2, config)
    m1, v1, m2, v2 = pair_latents(mu1, lv1, mu2, lv2, "aligned")
    l_kl = kl_redundancy_loss(gaussian_kl_matrix(m1, v1, m2, v2), 1.0)
    l_mu = barlow_twins_loss(m1, m2, 0.2)
    torch.testing.assert_close(parts.total, l_kl + l_mu)
    torch.testing.assert_close(parts.parts["l_kl"], l_kl)


def test_metrics_match_hand_counts():
    truth = np.zeros((3, 2, 2), bool)
    prediction = np.zeros((3, 2, 2), bool)
    truth[0] = [[1, 1], [1, 0]]
    prediction[0] = [[1, 1], [0, 1]]  # tp 2, fp 1, fn 1
    prediction[1, 0, 0] = True  # negative slice with a false positive: not part of the overlap counts
    metrics = slice_stack_metrics(prediction, truth)  # slice 2: negative, predicted empty
    assert metrics["dice"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))  # positive slice 0 only: tp 2, fp 1, fn 1
    assert metrics["iou"] == pytest.approx(2 / 4)
    assert metrics["precision"] == pytest.approx(2 / 3)
    assert metrics["recall"] == pytest.approx(2 / 3)
    assert metrics["negative_slices"] == 2
    assert metrics["fp_rate"] == pytest.approx(0.5)
    assert metrics["fp_pixels"] == pytest.approx(0.5)
    empty = slice_stack_metrics(np.zeros((1, 2, 2), bool), np.zeros((1, 2, 2), bool))
    assert (empty["dice"], empty["precision"], empty["recall"], empty["fp_rate"]) == (None, None, None, 0.0)
    missed = slice_stack_metrics(np.zeros((1, 2, 2), bool), np.ones((1, 2, 2), bool))
    assert (missed["dice"], missed["precision"], missed["recall"], missed["fp_rate"]) == (0.0, 0.0, 0.0, None)
