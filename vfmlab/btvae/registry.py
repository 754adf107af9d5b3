"""Build models by name: ``btvae``, ``vae``, ``unet``, ``bt-unet``.

Importing this module does not import torch, so the CLI and the Slicer panel can list the models.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Optional

from vfmlab.errors import InputError

from .config import ModelConfig

if TYPE_CHECKING:
    from torch import nn

Pretraining = Optional[Literal["bt-vae", "barlow-twins"]]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    architecture: Literal["vae", "unet"]
    pretraining: Pretraining  # stage 1 objective, None: trained on labels only
    description: str


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("btvae", "vae", "bt-vae",
                  "VAE whose encoder is pretrained with the Barlow Twins loss on its latent Gaussians (BT-VAE)"),
        ModelSpec("vae", "vae", None, "the same VAE trained on labels only"),
        ModelSpec("unet", "unet", None, "monai UNet trained on labels only"),
        ModelSpec("bt-unet", "unet", "barlow-twins",
                  "monai UNet whose encoder is pretrained with the standard Barlow Twins loss (BT-U-Net)"),
    )
}
MODEL_NAMES = tuple(MODELS)


def get_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise InputError(f"unknown model '{name}'; choose one of {', '.join(MODEL_NAMES)}") from None


def build_model(name: str, config: ModelConfig) -> nn.Module:
    """A fresh, randomly initialised model ``name``; its ``probabilistic`` attribute says if it samples z."""
    from .unet import UNetSegmenter
    from .vae import VAESegmenter

    spec = get_spec(name)
    config.validate()
    model = VAESegmenter(config) if spec.architecture == "vae" else UNetSegmenter(config)
    if config.foreground_prior is not None:
        _init_mask_bias(model, config.foreground_prior)
    return model


def _init_mask_bias(model: nn.Module, prior: float) -> None:
    """Set the bias of the layer that outputs the mask logits to log(prior / (1 − prior)).

    That layer is the last convolution registered: the VAE decoder's head, and in monai's UNet the
    final convolution of its top up-layer (monai has no option for this initialisation).
    """
    import math

    from torch import nn

    convolutions = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    head = convolutions[-1]
    if head.out_channels != 1 or head.bias is None:
        raise RuntimeError(f"the last convolution of {type(model).__name__} is not the mask head: {head}")
    nn.init.constant_(head.bias, math.log(prior / (1.0 - prior)))
