"""Job process: ``python -m vfmlab.jobs CONFIG.json``.

CONFIG is ``{"task": NAME, "params": {...}, "log_file": PATH?, "events_file": PATH?, "module": NAME?,
"resume": BOOL?}``. Events go to stdout as JSON lines; everything else the task writes to stdout goes
to stderr, which the client points at the log file.
"""
from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any, TextIO

from vfmlab.errors import JobError, VfmlabError
from vfmlab.jobs.events import Reporter
from vfmlab.jobs.registry import get_task


class JobCancelled(BaseException):
    """Raised in the main thread on SIGTERM so the task's ``finally`` blocks and context managers run."""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    stream = _take_protocol_stream()
    if len(args) != 1:
        Reporter(stream).failed("usage: python -m vfmlab.jobs CONFIG.json", "UsageError")
        return 2
    try:
        config = _load_config(Path(args[0]))
    except JobError as exc:
        Reporter(stream).failed(str(exc), "JobError")
        return 2

    reporter = Reporter(stream, config.get("log_file"), config.get("events_file"))
    signal.signal(signal.SIGTERM, _raise_cancelled)
    reporter.started(config["task"])
    try:
        if config.get("module"):
            importlib.import_module(config["module"])
        task = get_task(config["task"])
        result = task({**config["params"], "resume": bool(config.get("resume", False))}, reporter)
    except JobCancelled:
        reporter.write_log("cancelled: received SIGTERM")
        return 128 + signal.SIGTERM
    except Exception as exc:
        reporter.failed(_readable(exc), type(exc).__name__, traceback.format_exc())
        return 1
    reporter.finished(result)
    return 0


def _take_protocol_stream() -> TextIO:
    """Keep the real stdout for events and send everything else written to stdout to stderr."""
    sys.stdout.flush()
    events_fd = os.dup(1)  # not inheritable: grandchildren must not hold the protocol pipe open
    # Redirect the descriptor, not only sys.stdout: C extensions and subprocesses write to fd 1 directly.
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(events_fd, "w", encoding="utf-8", buffering=1)


def _load_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise JobError(f"cannot read job config {path}: {exc}") from exc
    if not isinstance(config, dict) or not isinstance(config.get("task"), str):
        raise JobError(f"job config {path} has no task name")
    if not isinstance(config.setdefault("params", {}), dict):
        raise JobError(f"job config {path}: params must be an object")
    # Relative paths mean relative to the config file, not to wherever the process was started.
    for key in ("log_file", "events_file"):
        if config.get(key):
            config[key] = path.parent / config[key]
    return config


def _raise_cancelled(signum: int, frame: object) -> None:
    raise JobCancelled()


def _readable(exc: Exception) -> str:
    """Our errors carry a user-facing message; for others the type name is part of the message."""
    if isinstance(exc, VfmlabError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
