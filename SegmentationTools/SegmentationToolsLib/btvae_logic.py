"""BT-VAE section of Segmentation Tools, without Qt: MRML nodes ⇄ :mod:`vfmlab.btvae`.

Training runs as a background job (``btvae-train``): the volume and the chosen segment are written
into the run folder first, because the job is another process. Prediction runs here (it takes
seconds) and lands in the scene as a new segment plus an uncertainty volume beside it.
Heavy modules (torch, monai) are imported inside the functions that need them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from vfmlab.btvae.config import TrainConfig
from vfmlab.btvae.registry import DEFAULT_MODEL

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


@dataclass
class TrainingJob:
    """Arguments of ``vfmlab.jobs.Job.start`` / ``BackgroundProcess`` for one training run."""

    task: str
    params: dict[str, Any]
    module: str
    workdir: Path


class BTVAELogic:
    def __init__(self, scene):
        self.scene = scene

    def training_job(
        self, volume_node, segmentation_node, segment_id: str, run_dir: str | Path, settings: TrainingSettings,
        threads: Optional[int] = None,
    ) -> TrainingJob:
        """Write the volume and the segment (as label 1) into ``run_dir/inputs`` and describe the job.

        Raises :class:`vfmlab.errors.InputError` for a missing input or an empty segment; nothing is
        written then.
        """
        from vfmlab.btvae.registry import get_spec
        from vfmlab.btvae.tasks import TASK_MODULE, TRAIN_TASK, train_job_params
        from vfmlab.errors import InputError
        from vfmlab.volume_io import write_volume
        from vfmlab.mrml import segment_mask, volume_from_node

        if volume_node is None or segmentation_node is None or not segment_id:
            raise InputError("select the volume, the segmentation and the segment to learn first")
        get_spec(settings.model)
        config = settings.to_config()
        volume = volume_from_node(volume_node)
        mask = segment_mask(segmentation_node, segment_id, volume_node)
        if not mask.any():
            raise InputError(f"segment '{segment_id}' is empty: there is nothing to learn from")
        run_dir = Path(run_dir)
        inputs = run_dir / "inputs"
        volume_path = write_volume(volume, inputs / "volume.nrrd")
        labels_path = write_volume(volume.with_array(mask.astype("uint8")), inputs / "labels.nrrd")
        name = segmentation_node.GetSegmentation().GetSegment(segment_id).GetName()
        (inputs / "segment.json").write_text(json.dumps({"segment_name": name}), encoding="utf-8")
        params = train_job_params(run_dir, [{"volume": volume_path, "labels": labels_path}], "1",
                                  settings.model, config, threads)
        return TrainingJob(TRAIN_TASK, params, TASK_MODULE, run_dir)

    def start_training(self, job: TrainingJob, resume: bool = False, **kwargs):
        """Start the job process (returns a :class:`vfmlab.jobs.Job`); the panel uses ``BackgroundProcess``."""
        from vfmlab.jobs import Job

        return Job.start(job.task, job.params, job.workdir, module=job.module, resume=resume, **kwargs)

    @staticmethod
    def read_metrics(run_dir: str | Path) -> Optional[dict[str, Any]]:
        """Held-back metrics of a finished run, or None."""
        from vfmlab.btvae.run_folder import finished_summary

        return finished_summary(run_dir)

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

    def prediction_job(self, run_dir: str | Path, volume_node, samples: Optional[int] = None) -> TrainingJob:
        """Write the volume into a new folder of ``run_dir/predictions`` and describe the ``btvae-predict`` job
        (the model runs in the job's process, never in Slicer's)."""
        import tempfile

        from vfmlab.btvae.run_folder import MODEL_FILE
        from vfmlab.btvae.tasks import PREDICT_TASK, TASK_MODULE
        from vfmlab.errors import InputError
        from vfmlab.mrml import volume_from_node
        from vfmlab.volume_io import write_volume

        if volume_node is None:
            raise InputError("select the volume to segment first")
        if not (Path(run_dir) / MODEL_FILE).is_file():
            raise InputError(f"{run_dir} holds no trained model ({MODEL_FILE}); train one, or pick a finished run")
        (Path(run_dir) / "predictions").mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="prediction-", dir=Path(run_dir) / "predictions"))
        volume_path = write_volume(volume_from_node(volume_node), folder / "volume.nrrd")
        params = {"run_dir": str(Path(run_dir).resolve()), "volume": str(volume_path), "out": str(folder),
                  "samples": samples}
        return TrainingJob(PREDICT_TASK, params, TASK_MODULE, folder / "job")

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
