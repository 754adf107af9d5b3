"""Build models by name: the catalogue's ``btvae`` entries (``btvae``, ``vae``, ``unet``, ``bt-unet``).

Importing this module does not import torch, so the CLI and the Slicer panel can list the models.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Optional

from vfmlab.models import catalogue

from .config import ModelConfig

if TYPE_CHECKING:
    from torch import nn

Pretraining = Optional[Literal["bt-vae", "barlow-twins"]]


@dataclass(frozen=True)
class BTVAESpec:
    """A catalogue entry seen as a few-label segmenter."""

    name: str
    architecture: Literal["vae", "unet"]
    pretraining: Pretraining  # stage 1 objective, None: trained on labels only
    description: str


MODEL_NAMES = catalogue.names("btvae")
DEFAULT_MODEL = "btvae"


def get_spec(name: str) -> BTVAESpec:
    entry = catalogue.get(name, "btvae")
    options = entry.role("btvae").options
    return BTVAESpec(entry.name, options["architecture"], options["pretraining"], entry.description)


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
