"""Typed configs of a BT-VAE run: model, stage 1 (Barlow Twins pretraining), stage 2 (fine-tuning), data.

Defaults follow the BT-VAE paper (Park et al., AdamW, pretrain lr 3e-4 / wd 1e-4 / batch 16 / 200
epochs, fine-tune lr 1e-4 / batch 16 / 400 epochs, λ = 0.2, α = 0.99, latent 1024×8×8) where it
gives a value; every choice it leaves open is a field here with the reason beside it.
:meth:`TrainConfig.cpu` shrinks widths and epochs so a run fits a laptop CPU at 128².
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any, Optional

from vfmlab.errors import InputError

LATENT_PAIRINGS = ("aligned", "pooled")
INTENSITY_MODES = ("auto", "ct", "percentile")
SLICE_AXES = ("axial", "coronal", "sagittal")
LABEL_CHOICES = ("random", "key")


@dataclass
class ModelConfig:
    """Shared by every model so baselines differ only in what the paper varies.

    ``widths`` are the channels of monai's UNet levels; each level after the first halves the
    image, so the latent (and the U-Net bottleneck) is ``image_size / 2**(len(widths) - 1)`` wide.
    """

    image_size: int = 256
    in_channels: int = 1
    widths: tuple[int, ...] = (32, 64, 128, 256, 512, 1024)
    latent_channels: int = 1024
    num_res_units: int = 2
    # monai UNet's default; batch statistics are unreliable at the small batches CPU training uses.
    norm: str = "instance"
    # log σ² is clamped so KL terms with 1/σ² stay finite early in training.
    logvar_limit: float = 8.0
    # The mask head's bias starts at the log-odds of this foreground fraction (RetinaNet's prior
    # init), for every model alike. From p = 0.5 everywhere a short run spends most of its epochs
    # pushing the background down (Adam moves a bias ~lr per step); None keeps PyTorch's init.
    foreground_prior: Optional[float] = 0.01

    @property
    def latent_size(self) -> int:
        return self.image_size // 2 ** (len(self.widths) - 1)

    def validate(self) -> None:
        if len(self.widths) < 2:
            raise InputError(f"widths needs at least two levels, got {self.widths}")
        if self.foreground_prior is not None and not 0.0 < self.foreground_prior < 1.0:
            raise InputError(f"foreground prior must be in (0, 1), got {self.foreground_prior}")
        if self.image_size % 2 ** (len(self.widths) - 1):
            raise InputError(
                f"image size {self.image_size} is not divisible by 2**{len(self.widths) - 1} "
                f"(one halving per level after the first of widths {self.widths})"
            )

    @classmethod
    def cpu(cls, image_size: int = 128) -> "ModelConfig":
        """Narrow widths, as many levels as give an 8×8 latent (the paper's latent size)."""
        levels = max(2, int(math.log2(max(image_size, 16) / 8)) + 1)
        widths = tuple(min(16 * 2**level, 256) for level in range(levels))
        return cls(image_size=image_size, widths=widths, latent_channels=widths[-1])


@dataclass
class PretrainConfig:
    """Stage 1, no labels. ``epochs = 0`` skips it (the models without pretraining never run it)."""

    epochs: int = 200
    lr: float = 3e-4
    weight_decay: float = 1e-4
    batch_size: int = 16
    lambda_offdiag: float = 0.2  # λ of L_μ (paper) and of BT-U-Net's standard loss (same λ for both)
    # Target KL between different latent channels; the paper names τ without a value. 1.0 is the KL
    # between two unit-variance Gaussians whose means differ by √2, i.e. independent unit features.
    tau: float = 1.0
    # How the two views' latents are paired before the (C×C) matrices are formed. The views are the
    # input rotated 90° left and right; "aligned" rotates each latent map back so position p of both
    # views shows the same anatomy, and every (image, position) is one sample. "pooled" reduces each
    # channel of each image to one Gaussian first (mean of μ; mean of σ² plus the spatial variance
    # of μ: the moment-matched Gaussian of the map) and pairs images only.
    latent_pairing: str = "aligned"
    # BT-U-Net's projector (standard Barlow Twins: pooled bottleneck → MLP → cross-correlation).
    projector_dims: tuple[int, ...] = (1024, 1024)


@dataclass
class FinetuneConfig:
    """Stage 2: the whole model on the labelled slices."""

    epochs: int = 400
    lr: float = 1e-4
    weight_decay: float = 1e-4  # the paper states wd for pretraining only; the same value is kept
    batch_size: int = 16
    # L = α·Dice + (1 − α)·BCE; the paper's 0.99. With Dice over the batch, BCE is the only term that a
    # negative slice's false positives weigh in much: see TrainConfig.cpu.
    alpha: float = 0.99
    # Weight of KL(q(z|x) ‖ N(0, I)) (mean over latent elements); the paper gives none. Small, so the
    # latent still carries the image: at 1.0 the posterior collapses and masks go blank.
    kl_weight: float = 1e-3
    # Dice over the whole batch rather than per image: a negative slice alone has no defined Dice.
    dice_batch: bool = True


STUDY_RATIOS = (0.9, 0.7, 0.5, 0.3, 0.1)  # label ratios of btvae-study (the source's Figure 2)


@dataclass
class DataConfig:
    axis: str = "axial"  # slices are cut perpendicular to this anatomical axis (vfmlab.slices)
    ratio: float = 0.3  # fraction of the training slices whose masks stage 2 may use
    # Slices held back for the metrics; chosen before the label ratio so every ratio (and every
    # model) of a study is scored on the same slices.
    test_fraction: float = 0.2
    seed: int = 0
    # which training slices get labels: "random" (one fixed shuffle) or "key" (vfmlab.keyslices: the slices an
    # encoder finds important and unlike each other first, chosen from the images alone)
    label_choice: str = "random"
    intensity: str = "auto"  # vfmlab.segment.intensity: HU window for CT, percentiles otherwise
    ct_window: str = "abdomen"

    def validate(self) -> None:
        if not 0.0 < self.ratio <= 1.0:
            raise InputError(f"label ratio must be in (0, 1], got {self.ratio}")
        if not 0.0 < self.test_fraction < 1.0:
            raise InputError(f"test fraction must be in (0, 1), got {self.test_fraction}")
        if self.axis not in SLICE_AXES:
            raise InputError(f"unknown slice axis '{self.axis}'; use one of {', '.join(SLICE_AXES)}")
        if self.label_choice not in LABEL_CHOICES:
            raise InputError(f"unknown label choice '{self.label_choice}'; use one of {', '.join(LABEL_CHOICES)}")
        if self.intensity not in INTENSITY_MODES:
            raise InputError(f"unknown intensity mode '{self.intensity}'; use one of {', '.join(INTENSITY_MODES)}")


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    data: DataConfig = field(default_factory=DataConfig)
    inference_samples: int = 16  # z draws per slice for the mean mask and its variance
    device: str = "auto"  # "auto": CUDA when available
    checkpoint_every: int = 1  # epochs between atomic checkpoints (resume loses at most this many)

    @classmethod
    def paper(cls) -> "TrainConfig":
        return cls()

    @classmethod
    def cpu(cls, image_size: int = 128, pretrain_epochs: int = 20, epochs: int = 40) -> "TrainConfig":
        """CPU-sized run: narrow model, batch 8, fewer epochs, fine-tune lr raised to match, and BCE weighed
        as much as Dice (α = 0.5). At the paper's α = 0.99 these short runs leave the VAEs predicting a
        blob on every slice without the structure (``bench/results/btvae.json``, ``negatives``)."""
        model = ModelConfig.cpu(image_size)
        return cls(
            model=model,
            pretrain=PretrainConfig(epochs=pretrain_epochs, batch_size=8, projector_dims=(256, 256)),
            finetune=FinetuneConfig(epochs=epochs, batch_size=8, lr=1e-3, alpha=0.5),
        )

    def validate(self) -> None:
        self.model.validate()
        self.data.validate()
        if self.pretrain.latent_pairing not in LATENT_PAIRINGS:
            raise InputError(
                f"unknown latent pairing '{self.pretrain.latent_pairing}'; use one of {', '.join(LATENT_PAIRINGS)}"
            )
        if not 0.0 <= self.finetune.alpha <= 1.0:
            raise InputError(f"alpha must be in [0, 1], got {self.finetune.alpha}")
        if self.finetune.epochs < 1:
            raise InputError("fine-tuning needs at least one epoch")
        if self.inference_samples < 1:
            raise InputError("inference needs at least one sample of z")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error (a typo must not fall back silently)."""
        return _from_dict(cls, data)


def _from_dict(cls, data: dict[str, Any]):
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise InputError(f"unknown {cls.__name__} setting(s): {', '.join(unknown)}")
    values = {}
    defaults = cls()
    for name, value in data.items():
        current = getattr(defaults, name)
        if is_dataclass(current):
            values[name] = _from_dict(type(current), value)
        elif isinstance(current, tuple):
            values[name] = tuple(value)
        else:
            values[name] = value
    return cls(**values)
