"""Background job task ``segment-finetune`` (start it with ``module=TASK_MODULE``)."""
from __future__ import annotations

from ..jobs import Reporter, register_task
from .config import SegmenterFinetuneConfig

FINETUNE_TASK = "segment-finetune"
TASK_MODULE = __name__


@register_task(FINETUNE_TASK)
def finetune_task(params: dict, reporter: Reporter) -> dict:
    """``params`` = {volume, labels (files), run_dir, config (SegmenterFinetuneConfig fields), register_as, resume}."""
    from ..volume_io import read_labels, read_volume
    from ..weights import register_user_model
    from .finetune import finetune, finetune_run

    volume = read_volume(params["volume"])
    labels = read_labels(params["labels"], volume)
    config = SegmenterFinetuneConfig(**params.get("config", {}))
    finetune_run(params["run_dir"]).clear_stop()  # a stop asked of an earlier run of this folder is not this run's
    summary = finetune(volume, labels, config, params["run_dir"], resume=bool(params.get("resume")), reporter=reporter)
    reporter.artifact("checkpoint", summary["best_checkpoint"])
    if params.get("register_as") and not summary["stopped"]:
        entry = register_user_model(params["register_as"], summary["best_checkpoint"], config.model)
        summary["registered_model"] = entry.name
    return summary
