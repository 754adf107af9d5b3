"""Background job task ``dvr-train`` (start it with :func:`start_background`, or ``module=TASK_MODULE``)."""
from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

from ..errors import InputError
from ..jobs import Reporter, register_task
from .checkpoints import RunDir
from .config import TrainConfig
from .train import train

TRAIN_TASK = "dvr-train"
TASK_MODULE = __name__


@register_task(TRAIN_TASK)
def dvr_train_task(params: dict, reporter: Reporter) -> dict:
    """Background job: ``params`` = ``{"run_dir": ..., "config": {...TrainConfig}}`` (+ ``resume``)."""
    run_dir = params["run_dir"]
    config = TrainConfig.from_dict(params["config"]) if params.get("config") else None
    if config is None and not params.get("resume"):
        raise InputError("a new DeepDVR run needs its training config")
    reporter.log(f"DeepDVR training in {run_dir}")
    return train(config, run_dir, reporter, resume=bool(params.get("resume")))


def start_background(run_dir: str | Path, config: TrainConfig | None, resume: bool = False, python: str | None = None):
    """Start the ``dvr-train`` job for ``run_dir`` (config None: resume with the stored one); returns the Job."""
    from ..jobs import Job

    run = RunDir(run_dir)
    run.path.mkdir(parents=True, exist_ok=True)
    run.clear_stop()
    params = {"run_dir": str(run.path.resolve()), "config": asdict(config) if config is not None else None}
    return Job.start(TRAIN_TASK, params, run.path, module=TASK_MODULE, python=python or sys.executable,
                     resume=resume)
