"""The settings of a DeepDVR training run, with every default stated once (no torch: the command line
reads its defaults from here)."""
from __future__ import annotations

from dataclasses import dataclass, field, fields

from ..errors import InputError

DEFAULT_LR = {"lookup": 0.1, "mlp": 0.01}  # deep models: 0.003 (paper Sec. 4.2)
DEFAULT_S_HIGH = 2.0


@dataclass
class TrainConfig:
    """Everything a run needs; stored as the run folder's ``config.json``."""

    captures: str
    model: str = "lookup"
    size: str = "small"  # "small" (CPU widths) or "paper" (Table 1 widths)
    model_settings: dict = field(default_factory=dict)
    epochs: int = 100
    batch_size: int = 4  # global: split over data-parallel processes
    lr: float | None = None
    s_low: float = 0.1
    # Rate of the last epoch; None: the captures' renderer's own rate when known (Slicer's CPU ray
    # casting), so the learned TF fits the sampling it will be shown with; else 2.0 (paper).
    s_high: float | None = None
    anneal: bool = True  # False: train at the fixed sampling rate s_high
    # Ray jitter (paper Eq. 7). Off by default: without it, samples sit where the captures' renderer
    # put them when that is known (Slicer's CPU ray casting), which reconstructed TFs better (measured).
    jitter: bool = False
    validation_sampling_rate: float | None = None  # default: the captures' renderer's own sampling, else s_high
    image_size: int | None = None  # training render height (default: as captured; width keeps the aspect)
    validation_size: int | None = None  # validation render height (default: as captured)
    validation_every: int = 5  # every n-th capture is a validation view
    seed: int = 0
    volume: str | None = None  # overrides the volume recorded in cameras.json
    targets: str = "images"  # "images" (captured or edited views) or "labels" (segment colours)
    threads: int = 2
    chunk_steps: int = 32

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InputError(f"unknown training settings {sorted(unknown)}")
        return cls(**data)

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR.get(self.model, 0.003)

    def sampling_rate(self, epoch: int, s_high: float | None = None) -> float:
        """Paper Eq. 14 with epochs counted from 1, so the last epoch samples at ``s_high``
        (the config's, else the given resolved one, else 2.0)."""
        s_high = self.s_high or s_high or DEFAULT_S_HIGH
        if not self.anneal:
            return s_high
        progress = (epoch / self.epochs) ** 2
        return self.s_low * (1 - progress) + progress * s_high


STUDY_MODELS = ("lookup", "mlp", "vnet4-4", "dvrnet")


@dataclass
class StudyConfig:
    """``vfmlab dvr-study``: every model trained on the same colourised views, scored on held-out ones."""

    models: tuple[str, ...] = STUDY_MODELS
    epochs: int = 30
    views: int = 16
    size: int = 64  # captured and trained image height and width
    preset: str = "CT-AAA"  # the intensity preset whose opacity (and colour outside segments) the targets use
    shift: float = 0.0
    elevation: float = 20.0
    validation_every: int = 4  # every n-th view is held out
    batch_size: int = 2
    model_size: str = "small"  # DeepDVR model widths: "small" (CPU) or "paper"
    s_high: float = 1.0  # the last epoch's (and validation's) samples per voxel; annealed from 0.1
    seed: int = 0
    threads: int = 2
