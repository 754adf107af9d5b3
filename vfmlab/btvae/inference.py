"""Inference: mean mask and per-pixel variance from several draws of z; whole volumes slice by slice.

A VAE encodes each slice once and decodes ``n_samples`` draws z = μ + σ·ε; the mean of the
sigmoid probabilities is the prediction (thresholded at 0.5 for the mask) and their variance the
uncertainty. A U-Net is deterministic: one pass, variance zero.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from vfmlab.devices import resolve_device
from vfmlab.errors import InputError
from vfmlab.volume_io import check_finite
from vfmlab.volume import Volume

from .checkpoint import TrainedModel
from .data import volume_slices
from .prediction import VolumePrediction


@torch.no_grad()
def predict_slices(
    model: nn.Module, images: np.ndarray, n_samples: int, batch_size: int = 16, device: str | torch.device = "cpu",
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, S, S) in [0, 1] → (mean probability, variance), each (N, S, S) float32.

    ``seed`` fixes the draws of z, so predicting twice gives the same mask.
    """
    device = torch.device(device)
    model = model.to(device).eval()
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    means, variances = [], []
    try:
        for start in range(0, len(images), batch_size):
            batch = torch.as_tensor(images[start : start + batch_size], dtype=torch.float32, device=device)[:, None]
            if model.probabilistic:
                mu, logvar = model.encoder(batch)
                samples = model.decode_samples(mu, logvar, n_samples)[:, :, 0]
                means.append(samples.mean(0).cpu())
                variances.append(samples.var(0, unbiased=False).cpu())
            else:
                probability = torch.sigmoid(model(batch).logits)[:, 0]
                means.append(probability.cpu())
                variances.append(torch.zeros_like(probability).cpu())
    finally:
        torch.random.set_rng_state(generator_state)
    return torch.cat(means).numpy(), torch.cat(variances).numpy()


def predict_volume(trained: TrainedModel, volume: Volume, n_samples: int | None = None) -> VolumePrediction:
    """Segment every slice of ``volume`` along the axis the model was trained on."""
    check_finite(volume.array, volume.name)
    config = trained.config
    images, stack, fit = volume_slices(volume, config.data, config.model.image_size)
    n_samples = config.inference_samples if n_samples is None else int(n_samples)
    if n_samples < 1:
        raise InputError(f"the number of samples must be at least 1, got {n_samples}")
    mean, variance = predict_slices(
        trained.model, images, n_samples if trained.probabilistic else 1, device=resolve_device(config.device)
    )
    probability = np.zeros(volume.array.shape, np.float32)
    spread = np.zeros(volume.array.shape, np.float32)
    # The stack's views are writable windows onto the (K, J, I) arrays: filling them fills the grid.
    stack.view(probability)[...] = np.clip(fit.from_model(mean), 0.0, 1.0)
    stack.view(spread)[...] = np.clip(fit.from_model(variance), 0.0, None)
    return VolumePrediction(probability, probability >= 0.5, spread, trained.probabilistic,
                            n_samples if trained.probabilistic else 1)
