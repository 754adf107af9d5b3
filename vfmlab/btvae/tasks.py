"""Background job tasks ``btvae-train``, ``btvae-predict`` and ``btvae-study`` (start them with ``module=TASK_MODULE``).

Params are JSON: ``sources`` (``[{"volume": P, "labels": P} | {"folder": P}]``), ``label``,
``config`` (:meth:`TrainConfig.to_dict`), ``out`` (run or study folder), ``threads`` (torch CPU
threads, optional); ``btvae-train`` adds ``model`` and ``pretrained``, ``btvae-study`` ``models``
and ``ratios``. Cancelling a job stops it between two writes of its atomic checkpoint; starting
it again with ``resume=True`` continues from there.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from vfmlab.jobs import Reporter, register_task

from .config import TrainConfig

TASK_MODULE = "vfmlab.btvae.tasks"
TRAIN_TASK = "btvae-train"
STUDY_TASK = "btvae-study"
PREDICT_TASK = "btvae-predict"


def train_job_params(
    out: str | Path, sources: list[dict[str, Any]], label: str, model: str, config: TrainConfig,
    threads: int | None = None,
) -> dict[str, Any]:
    """JSON-ready params of a ``btvae-train`` job."""
    return {"out": str(out), "sources": [{k: str(v) for k, v in s.items()} for s in sources], "label": str(label),
            "model": model, "config": config.to_dict(), "threads": threads}


def _set_threads(params: dict[str, Any]) -> None:
    import torch

    if params.get("threads"):
        torch.set_num_threads(int(params["threads"]))


@register_task(TRAIN_TASK)
def train_task(params: dict[str, Any], reporter: Reporter) -> dict[str, Any]:
    from .run import train_run
    from .run_folder import MODEL_FILE, btvae_run

    _set_threads(params)
    out = Path(params["out"])
    btvae_run(out).clear_stop()  # a stop asked of an earlier run of this folder is not this run's
    metrics = train_run(
        out, params["sources"], params["label"], params["model"], TrainConfig.from_dict(params["config"]),
        resume=bool(params.get("resume")), pretrained=params.get("pretrained"), reporter=reporter,
    )
    if not metrics.get("stopped"):
        reporter.artifact("model", out / MODEL_FILE)
    return {"run_dir": str(out), "metrics": metrics}


@register_task(PREDICT_TASK)
def predict_task(params: dict[str, Any], reporter: Reporter) -> dict[str, Any]:
    """Segment ``volume`` with the trained run ``run_dir`` (``samples`` draws of z, optional) and write the
    prediction's maps into ``out`` (:class:`vfmlab.btvae.prediction.VolumePrediction` reads them back)."""
    from vfmlab.volume_io import read_volume

    from .checkpoint import load_trained
    from .inference import predict_volume

    _set_threads(params)
    trained = load_trained(params["run_dir"])
    volume = read_volume(params["volume"])
    reporter.progress(0.1, f"segmenting {volume.array.shape[0]} slices")
    prediction = predict_volume(trained, volume, params.get("samples"))
    out = prediction.save(params["out"], volume, name=trained.name, label=str(trained.label))
    return {"out": str(out), "name": trained.name, "label": str(trained.label), "voxels": int(prediction.mask.sum())}


@register_task(STUDY_TASK)
def study_task(params: dict[str, Any], reporter: Reporter) -> dict[str, Any]:
    from .registry import MODEL_NAMES
    from .config import STUDY_RATIOS
    from .study import PLOT_PNG, TABLE_CSV, run_study

    _set_threads(params)
    out = Path(params["out"])
    rows = run_study(
        out, params["sources"], params["label"], TrainConfig.from_dict(params["config"]),
        tuple(params.get("models") or MODEL_NAMES), tuple(params.get("ratios") or STUDY_RATIOS),
        resume=bool(params.get("resume")), reporter=reporter,
    )
    reporter.artifact("table", out / TABLE_CSV)
    reporter.artifact("plot", out / PLOT_PNG)
    return {"study_dir": str(out), "rows": rows}
