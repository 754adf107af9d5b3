"""Settings of prompted segmentation and of prompt-segmenter fine-tuning, every default stated once (no
torch: the command line and the panel read them from here). Propagation's own settings are
:class:`vfmlab.segment.propagate.PropagationConfig`."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SegmentConfig:
    """``vfmlab segment`` and the panel's Segment section."""

    model: str = "litemedsam"
    axis: str = "axial"
    backend: str = "auto"  # where the image encoder runs: auto, torch, onnx, cuda (vfmlab.segment.encoder_backends)
    segment_name: str = "segment"
    device: str | None = None  # None: cuda when torch sees a GPU, else cpu


@dataclass
class SegmenterFinetuneConfig:
    model: str = "hq_litemedsam"
    segments: dict[str, int] = field(default_factory=dict)  # segment name → label value
    axis: str = "axial"
    epochs: int = 10
    learning_rate: float = 1e-4
    weight_decay: float = 1e-4
    batch_size: int = 1  # prompts whose losses are averaged before each optimiser step
    cosine_schedule: bool = False  # decay the learning rate to 0 over the run (cosine), else keep it
    train_decoder: bool = False  # also train the SAM part of the mask decoder
    validation_fraction: float = 0.3
    max_slices_per_segment: int | None = None  # subsample slices (evenly) to bound CPU time
    box_jitter: float = 0.1  # fraction of the box size each side may move
    point_prompt_probability: float = 0.25
    seed: int = 0
    device: str | None = None
