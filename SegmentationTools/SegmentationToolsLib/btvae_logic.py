"""BT-VAE section of Segmentation Tools, without Qt: MRML nodes ⇄ :mod:`vfmlab.btvae`.

Training (``btvae-train``) and prediction (``btvae-predict``) run as jobs on the model server: the volume
and the chosen segment are sent to it, the run is mirrored into the run folder chosen here (metrics and
summaries; the model stays on the server), and a prediction's maps come back and land in the scene as a
new segment plus an uncertainty volume beside it. No model code runs in Slicer's process.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from vfmlab.btvae.config import TrainConfig
from vfmlab.btvae.registry import DEFAULT_MODEL

from VFMVolumeLabLib.section_logic import SectionLogic

TRAINING, PREDICTION = "training", "prediction"
MIRRORED_RUN = ("*.json", "*.jsonl", "job.log")  # metrics and summaries; the model stays on the server
MIRRORED_PREDICTION = ("*.nrrd", "*.json")
METRIC_LABELS = (
    ("dice", "Dice"), ("iou", "IoU"), ("precision", "Precision"), ("recall", "Recall"),
    ("fp_rate", "False-positive rate (negative slices)"), ("fp_pixels", "False-positive pixels per negative slice"), ("slices", "Held-back slices"),
    ("negative_slices", "of which negative"), ("labelled_slices", "Labelled training slices"),
    ("training_slices", "Training slices"), ("seconds", "Training time (s)"),
)


_CPU_RUN = TrainConfig.cpu()  # the defaults of a panel run (no torch: the module opens without it)


@dataclass
class TrainingSettings:
    """What the panel asks for; the rest of the run's config is :meth:`TrainConfig.cpu`'s, whose values
    are also the defaults here."""

    model: str = DEFAULT_MODEL
    ratio: float = _CPU_RUN.data.ratio
    axis: str = _CPU_RUN.data.axis
    image_size: int = _CPU_RUN.model.image_size
    pretrain_epochs: int = _CPU_RUN.pretrain.epochs
    pretrain_lr: float = _CPU_RUN.pretrain.lr
    epochs: int = _CPU_RUN.finetune.epochs
    finetune_lr: float = _CPU_RUN.finetune.lr
    batch_size: int = _CPU_RUN.finetune.batch_size
    samples: int = _CPU_RUN.inference_samples
    seed: int = _CPU_RUN.data.seed

    def to_config(self) -> TrainConfig:
        config = TrainConfig.cpu(self.image_size, self.pretrain_epochs, self.epochs)
        config.pretrain.lr, config.finetune.lr = self.pretrain_lr, self.finetune_lr
        config.pretrain.batch_size = config.finetune.batch_size = self.batch_size
        config.data.ratio, config.data.axis, config.data.seed = self.ratio, self.axis, self.seed
        config.inference_samples = self.samples
        config.validate()
        return config


class BTVAELogic(SectionLogic):
    """Training and prediction jobs of one panel (one of each at a time)."""

    def start_training(self, client, volume_node, segmentation_node, segment_id: str, run_dir: str | Path,
                       settings: TrainingSettings, threads: Optional[int] = None, **callbacks):
        """Train on the segment (as label 1) on ``client``'s server, mirrored into ``run_dir``; returns the
        :class:`JobFollower` (``callbacks``: ``on_progress``, ``on_done``).

        Raises :class:`vfmlab.errors.InputError` for a missing input or an empty segment; nothing is sent
        or written then.
        """
        from vfmlab.btvae.registry import get_spec
        from vfmlab.btvae.tasks import TRAIN_TASK, train_job_params
        from vfmlab.client.jobs import ServerJob, volume_reference
        from vfmlab.errors import InputError
        from vfmlab.mrml import segment_mask, volume_from_node

        if volume_node is None or segmentation_node is None or not segment_id:
            raise InputError("select the volume, the segmentation and the segment to learn first")
        get_spec(settings.model)
        config = settings.to_config()
        volume = volume_from_node(volume_node)
        mask = segment_mask(segmentation_node, segment_id, volume_node)
        if not mask.any():
            raise InputError(f"segment '{segment_id}' is empty: there is nothing to learn from")
        sources = [{"volume": volume_reference(client, volume),
                    "labels": volume_reference(client, volume.with_array(mask.astype("uint8")))}]
        params = train_job_params("run:.", sources, "1", settings.model, config, threads)
        name = segmentation_node.GetSegmentation().GetSegment(segment_id).GetName()
        inputs = Path(run_dir) / "inputs"
        inputs.mkdir(parents=True, exist_ok=True)
        (inputs / "segment.json").write_text(json.dumps({"segment_name": name}), encoding="utf-8")
        return self.follow(TRAINING, lambda: ServerJob.start(client, TRAIN_TASK, params, run_dir, MIRRORED_RUN),
                           **callbacks)

    def resume_training(self, client, run_dir: str | Path, **callbacks):
        """Continue a stopped training run from its last checkpoint, on the server that trained it."""
        from vfmlab.client.jobs import ServerJob

        return self.follow(TRAINING, lambda: ServerJob.resume(client, run_dir, MIRRORED_RUN), **callbacks)

    @staticmethod
    def read_metrics(run_dir: str | Path) -> Optional[dict[str, Any]]:
        """Held-back metrics of a finished run (its mirrored summary), or None."""
        from vfmlab.btvae.run_folder import btvae_run

        return btvae_run(run_dir).summary()

    @staticmethod
    def metrics_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
        """(label, formatted value) rows for the panel's metrics table."""
        rows = []
        for key, label in METRIC_LABELS:
            value = metrics.get(key)
            if value is None:
                continue
            rows.append((label, f"{value:.3f}" if isinstance(value, float) else str(value)))
        return rows

    @staticmethod
    def trained_segment_name(run_dir: str | Path) -> Optional[str]:
        path = Path(run_dir) / "inputs" / "segment.json"
        return json.loads(path.read_text(encoding="utf-8")).get("segment_name") if path.is_file() else None

    def start_prediction(self, client, run_dir: str | Path, volume_node, samples: Optional[int] = None, **callbacks):
        """Segment the volume with the trained run on the server that trained it; the maps come back into a new
        folder of ``run_dir/predictions`` and ``on_done("finished", outcome)`` gets their ``out`` there
        (for :meth:`add_prediction`). Returns the :class:`JobFollower`."""
        import tempfile

        from vfmlab.btvae.tasks import PREDICT_TASK
        from vfmlab.client.jobs import ServerJob, run_reference, volume_reference
        from vfmlab.errors import InputError
        from vfmlab.mrml import volume_from_node

        if volume_node is None:
            raise InputError("select the volume to segment first")
        params = {"run_dir": run_reference(client, run_dir), "out": "run:.", "samples": samples,
                  "volume": volume_reference(client, volume_from_node(volume_node))}
        (Path(run_dir) / "predictions").mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="prediction-", dir=Path(run_dir) / "predictions"))
        return self.follow(PREDICTION, lambda: ServerJob.start(client, PREDICT_TASK, params, folder,
                                                               MIRRORED_PREDICTION), **callbacks)

    def add_prediction(self, run_dir: str | Path, outcome: dict[str, Any], volume_node, segmentation_node=None,
                       segment_name: Optional[str] = None, uncertainty: bool = True):
        """Put a finished prediction job's result into the scene; returns ``PredictionNodes``.

        The mask becomes a NEW segment (in ``segmentation_node``, or a new segmentation node); for VAE
        models the per-voxel variance over the z samples becomes a scalar volume node.
        """
        from vfmlab.btvae.prediction import VolumePrediction
        from vfmlab.btvae.scene import add_prediction
        from vfmlab.mrml import volume_from_node

        prediction, summary = VolumePrediction.load(outcome["out"], volume_from_node(volume_node))
        base = segment_name or self.trained_segment_name(run_dir) or f"label {summary['label']}"
        return add_prediction(
            self.scene, volume_node, prediction, f"{base} ({summary['name']})", segmentation_node,
            uncertainty=uncertainty and prediction.probabilistic,
        )
