"""Background job task ``dvr-train`` (start it with :func:`start_background`, or ``module=TASK_MODULE``),
and a run folder's job state: :func:`run_status`, :func:`stop_run`."""
from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

from ..errors import InputError
from ..jobs import Reporter, register_task
from .checkpoints import dvr_run
from .config import TrainConfig

TRAIN_TASK = "dvr-train"
VIEW_TASK = "dvr-view"
TASK_MODULE = __name__


@register_task(TRAIN_TASK)
def dvr_train_task(params: dict, reporter: Reporter) -> dict:
    """Background job: ``params`` = ``{"run_dir": ..., "config": {...TrainConfig}}`` (+ ``resume``)."""
    run_dir = params["run_dir"]
    config = TrainConfig.from_dict(params["config"]) if params.get("config") else None
    if config is None and not params.get("resume"):
        raise InputError("a new DeepDVR run needs its training config")
    from .train import train  # torch: only in the job's process, not for status or stop

    reporter.log(f"DeepDVR training in {run_dir}")
    return train(config, run_dir, reporter, resume=bool(params.get("resume")))


@register_task(VIEW_TASK)
def dvr_view_task(params: dict, reporter: Reporter) -> dict:
    """Background job: render one camera view with a trained run (its best checkpoint) into a PNG.

    ``params`` = ``{"run_dir", "record": CameraRecord fields, "height", "out": PNG path, "volume": path or None}``
    (no volume: the one the run was trained on).
    """
    from dataclasses import fields

    from ..cameras import CameraRecord
    from .captures import write_image
    from .inference import TrainedRun, read_volume_for

    known = {field.name for field in fields(CameraRecord)}
    record = CameraRecord(**{key: value for key, value in params["record"].items() if key in known})
    height = int(params["height"])
    if height < 8:
        raise InputError(f"a view of {height} rows is too small to render; use 8 or more")
    run = TrainedRun.load(params["run_dir"])
    volume = read_volume_for(run, params.get("volume"))
    reporter.progress(0.1, "rendering")
    image = run.render(volume, [record], height, background=run.training_set().capture.background)[0]
    return {"image": str(write_image(params["out"], image))}


def start_background(run_dir: str | Path, config: TrainConfig | None, resume: bool = False, python: str | None = None):
    """Start the ``dvr-train`` job for ``run_dir`` (config None: resume with the stored one); returns the Job."""
    from ..jobs import Job

    run = dvr_run(run_dir)
    run.path.mkdir(parents=True, exist_ok=True)
    run.clear_stop()
    params = {"run_dir": str(run.path.resolve()), "config": asdict(config) if config is not None else None}
    return Job.start(TRAIN_TASK, params, run.path, module=TASK_MODULE, python=python or sys.executable,
                     resume=resume)


def run_status(run_dir: Path) -> dict:
    """State of a run folder's job (running, finished, failed, cancelled, not started) and its last metrics."""
    from ..jobs import read_events

    events = read_events(run_dir)
    state = "not started"
    pid = None
    for event in events:
        if event.kind == "started":
            state, pid = "running", event.data.get("pid")
        elif event.kind in ("finished", "failed", "cancelled"):
            state = event.kind
    if state == "running" and pid is not None:
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            state = "died"
        except PermissionError:
            pass
    metrics = dvr_run(run_dir).metrics()
    last = metrics[-1] if metrics else {}
    return {"state": state, "pid": pid, **last}


def stop_run(run_dir: str | Path, wait_s: float) -> dict | None:
    """Ask a running run to stop (after its current batch) and wait up to ``wait_s`` seconds; its status
    once it has stopped, None when it is still running."""
    dvr_run(run_dir).request_stop()
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        status = run_status(Path(run_dir))
        if status["state"] != "running":
            return status
        time.sleep(0.2)
    return None
