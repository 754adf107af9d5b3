"""Job events: the JSON-lines protocol a job process writes and its client reads.

Each event is one line ``{"event": KIND, "time": EPOCH_SECONDS, ...payload}``. Kinds written by the
job process: ``started`` {task, pid}, ``progress`` {fraction, message}, ``metric`` {name, value, step},
``artifact`` {kind, path}, ``log`` {message}, ``finished`` {result}, ``failed`` {reason, error_type}.
The client adds ``cancelled`` {reason}, and ``failed`` {reason, error_type, exit_code} when the
process died without saying why.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

EVENTS_FILE = "events.jsonl"


@dataclass(frozen=True)
class JobEvent:
    """One protocol message; ``data`` is the payload without the ``event`` and ``time`` keys."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)

    def to_json(self) -> str:
        # default=str: results often hold Paths; a result must never make the job fail at the very end.
        return json.dumps({"event": self.kind, "time": self.time, **self.data}, default=str)

    @classmethod
    def from_json(cls, line: str) -> JobEvent:
        """Parse one protocol line; raises ValueError when it is not an event."""
        obj = json.loads(line)
        if not isinstance(obj, dict) or not isinstance(obj.get("event"), str):
            raise ValueError(f"not a job event: {line[:200]!r}")
        kind = obj.pop("event")
        stamp = float(obj.pop("time", 0.0))
        return cls(kind, obj, stamp)


def append_event(path: Path, event: JobEvent) -> None:
    """Append one event to a JSON-lines history file."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(event.to_json() + "\n")


def read_events(workdir: str | Path) -> list[JobEvent]:
    """Event history of the job run in ``workdir`` (empty when it never started).

    Unparsable lines are skipped: a process killed mid-write leaves a truncated last line.
    """
    path = Path(workdir) / EVENTS_FILE
    if not path.is_file():
        return []
    events = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            events.append(JobEvent.from_json(line))
        except ValueError:
            continue
    return events


class Reporter:
    """What a task uses to report: writes events to the protocol stream, the log and the history.

    Tasks call :meth:`progress`, :meth:`metric`, :meth:`artifact` and :meth:`log`; the job runtime
    calls :meth:`started`, :meth:`finished` and :meth:`failed`. Safe to call from several threads.
    """

    def __init__(self, stream: TextIO | None, log_file: Path | None = None, events_file: Path | None = None):
        self._stream = stream
        self.log_file = log_file
        self.events_file = events_file
        self._lock = threading.Lock()

    def emit(self, kind: str, /, **data: Any) -> JobEvent:
        """Write one event everywhere it belongs and return it.

        ``kind`` is positional-only because payloads may have a ``kind`` field (artifacts do).
        """
        event = JobEvent(kind, data)
        with self._lock:
            self._write_stream(event.to_json())
            self._write_log(f"{kind} {json.dumps(data, default=str)}")
            if self.events_file is not None:
                append_event(self.events_file, event)
        return event

    def started(self, task: str) -> JobEvent:
        return self.emit("started", task=task, pid=os.getpid())

    def progress(self, fraction: float, message: str = "") -> JobEvent:
        """Report overall completion; ``fraction`` is clamped to 0..1."""
        return self.emit("progress", fraction=min(1.0, max(0.0, float(fraction))), message=str(message))

    def metric(self, name: str, value: float, step: int | None = None) -> JobEvent:
        # float(): numpy/torch scalars are not JSON-serializable.
        return self.emit("metric", name=str(name), value=float(value), step=None if step is None else int(step))

    def artifact(self, kind: str, path: str | Path) -> JobEvent:
        return self.emit("artifact", kind=str(kind), path=str(path))

    def log(self, message: str) -> JobEvent:
        return self.emit("log", message=str(message))

    def finished(self, result: dict[str, Any] | None) -> JobEvent:
        return self.emit("finished", result=result)

    def failed(self, reason: str, error_type: str, traceback_text: str | None = None) -> JobEvent:
        """Report failure; the traceback goes to the log only, the event carries the readable reason."""
        if traceback_text:
            self.write_log(traceback_text.rstrip("\n"))
        return self.emit("failed", reason=reason, error_type=error_type)

    def write_log(self, text: str) -> None:
        """Append text to the log file (stderr when there is none), not to the protocol."""
        with self._lock:
            self._write_log(text)

    def _write_stream(self, line: str) -> None:
        if self._stream is None:
            return
        try:
            self._stream.write(line + "\n")
            self._stream.flush()
        except OSError:
            # The client went away (e.g. Slicer closed). Keep running: the log and the events file
            # still record everything, and a new session can re-attach by reading them.
            self._stream = None

    def _write_log(self, text: str) -> None:
        stamp = datetime.now().isoformat(timespec="milliseconds")
        if self.log_file is None:
            sys.stderr.write(f"{stamp} {text}\n")
            return
        with open(self.log_file, "a", encoding="utf-8") as handle:
            handle.write(f"{stamp} {text}\n")
