"""Using a trained run: load its model, render novel views at any size, re-render a learned TF in Slicer."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..cameras import CameraRecord, CaptureSet
from ..errors import InputError
from ..volume_io import read_volume
from ..volume import Volume
from .captures import TrainingSet, load_training_set
from .checkpoints import BEST, dvr_run, load_checkpoint
from .models import DVRModel, RenderOptions, VolumeInput, build_model
from .config import DEFAULT_S_HIGH, TrainConfig
from .train import image_ssim, learned_tf
from .transfer_functions import PiecewiseTF, ScalarDomain


@dataclass
class TrainedRun:
    """A run's model (weights of ``checkpoint``), its training config and its scalar domain."""

    run_dir: Path
    config: TrainConfig
    state: dict
    model: DVRModel

    @classmethod
    def load(cls, run_dir: str | Path, checkpoint: str = BEST) -> "TrainedRun":
        run = dvr_run(run_dir)
        config = TrainConfig.from_dict(run.read_config())
        state = load_checkpoint(run, checkpoint)
        model = build_model(state["model"], state["model_settings"])
        model.load_state_dict(state["model_state"])
        model.eval()
        return cls(run.path, config, state, model)

    @property
    def domain(self) -> ScalarDomain:
        return ScalarDomain(*self.state["domain"])

    @property
    def epoch(self) -> int:
        return int(self.state["epoch"])

    def training_set(self, volume_path: str | Path | None = None) -> TrainingSet:
        return load_training_set(self.config.captures, volume_path or self.config.volume, self.config.targets)

    def learned_tf(self) -> PiecewiseTF:
        return learned_tf(self.state)

    @torch.no_grad()
    def render(self, volume: Volume, views: Sequence[CameraRecord], height: int | None = None,
               sampling_rate: float | None = None, background=(0.0, 0.0, 0.0)) -> list[np.ndarray]:
        """``(H, W, 3)`` images in [0, 1] of ``views`` (at ``height`` rows, the view's aspect kept)."""
        rate = sampling_rate or self.config.validation_sampling_rate or self.config.s_high or DEFAULT_S_HIGH
        volume_input = VolumeInput.of(volume, self.domain, background)
        images = []
        for view in views:
            h = height or view.height
            w = max(1, round(h * view.width / view.height))
            image = self.model.render(volume_input, [view], w, h, RenderOptions(sampling_rate=rate))
            images.append(image[0].clamp(0, 1).permute(1, 2, 0).numpy())
        return images


def load_views(source: str | Path) -> list[CameraRecord]:
    """Views from a ``cameras.json`` file or a capture folder."""
    return CaptureSet.load(source).views


def slicer_rerender_ssim(tf: PiecewiseTF, data: TrainingSet, indices: Sequence[int],
                         method: str = "cpu") -> tuple[list[float], list[np.ndarray]]:
    """Re-render views with ``tf`` through Slicer's volume rendering (as the captures were rendered);
    SSIM of each against its capture."""
    from ..mrml.transfer_functions import render_views

    images = render_views(data.volume, tf, [data.views[i] for i in indices], data.capture.background, method)
    scores = []
    for index, image in zip(indices, images):
        target = torch.as_tensor(data.images[index]).permute(2, 0, 1)[None]
        rendered = torch.as_tensor(image).permute(2, 0, 1)[None]
        if rendered.shape != target.shape:
            raise InputError(f"view {index}: re-render {tuple(rendered.shape)} and capture {tuple(target.shape)} differ")
        scores.append(float(image_ssim(rendered, target)))
    return scores, images


def read_volume_for(run: TrainedRun, volume_path: str | Path | None) -> Volume:
    """The volume to render: ``volume_path``, else the one the run's captures record."""
    if volume_path is not None:
        return read_volume(volume_path)
    return run.training_set().volume
