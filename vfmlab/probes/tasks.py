"""Background-job task ``probe``: probe a capture folder in a job process (Slicer's "Capture & Probe").

Start with ``Job.start("probe", params, workdir, module="vfmlab.probes.tasks")``. Params: ``source``
(capture folder), ``out`` (output folder), ``models`` (list of probe names), optional ``input_size``,
``keep``, ``weights_files`` ({model: path}), ``threads`` (torch threads; default torch's own).
Cancelling the job stops it between captures or inside a model's forward (SIGTERM); what was written
so far stays in ``out``.
"""
from __future__ import annotations

from typing import Any

from ..cli import given_options
from ..jobs import Reporter, register_task


@register_task("probe")
def probe_task(params: dict[str, Any], reporter: Reporter) -> dict[str, Any]:
    import torch

    from .registry import parse_models
    from .run import probe_captures

    if params.get("threads"):
        torch.set_num_threads(int(params["threads"]))
    models = parse_models(",".join(params.get("models") or []))
    given = given_options(input_size=params.get("input_size"), keep=params.get("keep"))
    summary = probe_captures(params["source"], models, params["out"], weights_files=params.get("weights_files"),
                             progress=reporter.progress, **given)
    for model, reason in summary["skipped"].items():
        reporter.log(f"skipped {model}: {reason}")
    for model, result in summary["models"].items():
        reporter.metric(f"{model}/seconds_per_capture", result["seconds_per_capture"], None)
        reporter.artifact("grid", f"{params['out']}/{result['grid']}")
    reporter.artifact("report", f"{params['out']}/index.html")
    return {"out": params["out"], "models": list(summary["models"]), "skipped": summary["skipped"]}
