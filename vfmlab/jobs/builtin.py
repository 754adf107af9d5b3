"""Built-in tasks: small, dependency-free tasks that exercise the job machinery end to end."""
from __future__ import annotations

import os
import sys
import time
from typing import Any

from vfmlab.errors import VfmlabError
from vfmlab.jobs.events import Reporter
from vfmlab.jobs.registry import register_task


@register_task("sleep")
def sleep_task(params: dict[str, Any], reporter: Reporter) -> dict[str, Any]:
    """Sleep ``seconds`` in ``steps`` equal steps, reporting progress after each (a cancellable job)."""
    seconds = float(params.get("seconds", 1.0))
    steps = max(1, int(params.get("steps", 10)))
    for step in range(1, steps + 1):
        time.sleep(seconds / steps)
        reporter.progress(step / steps, f"step {step}/{steps}")
    return {"steps": steps}


@register_task("fail")
def fail_task(params: dict[str, Any], reporter: Reporter) -> None:
    """Raise a VfmlabError with ``message``."""
    raise VfmlabError(str(params.get("message", "the fail task failed as asked")))


@register_task("crash")
def crash_task(params: dict[str, Any], reporter: Reporter) -> None:
    """Exit with code 3 without reporting an outcome, like a segfault or an OOM kill would."""
    sys.stderr.write("crash task: exiting with code 3 without an event\n")
    sys.stderr.flush()
    os._exit(3)


@register_task("echo")
def echo_task(params: dict[str, Any], reporter: Reporter) -> dict[str, Any]:
    """Emit ``metrics`` [{name, value, step}] and ``artifacts`` [{kind, path}], return the params."""
    for metric in params.get("metrics", []):
        reporter.metric(metric["name"], metric["value"], metric.get("step"))
    for artifact in params.get("artifacts", []):
        reporter.artifact(artifact["kind"], artifact["path"])
    return dict(params)
