"""Run a vfmlab job from Slicer without blocking the GUI: a timer polls the job and calls back."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Protocol

from vfmlab.errors import JobError
from vfmlab.jobs import Job, JobEvent


class Timer(Protocol):
    """The part of ``qt.QTimer`` used here."""

    timeout: Any  # a signal: ``timeout.connect(callable)``

    def start(self, msec: int) -> None: ...

    def stop(self) -> None: ...


def qt_timer() -> Timer:
    """Default timer factory; imports qt lazily so this module imports in plain Python."""
    import qt

    return qt.QTimer()


def slicer_python() -> str:
    """The interpreter for job processes: in Slicer, sys.executable is the Slicer application itself."""
    return shutil.which("PythonSlicer") or sys.executable


class BackgroundProcess:
    """Owns one :class:`vfmlab.jobs.Job` and a timer; each tick polls the job and dispatches callbacks.

    ``on_progress(fraction, message)`` for progress events, ``on_event(event)`` for every event,
    ``on_done(state, result_or_reason)`` once: the task's result when ``state == "finished"``, the
    reason otherwise.
    """

    def __init__(
        self,
        task: str,
        params: Mapping[str, Any],
        workdir: str | Path,
        *,
        module: str | None = None,
        resume: bool = False,
        python: str | None = None,
        env: Mapping[str, str] | None = None,
        on_progress: Optional[Callable[[float, str], None]] = None,
        on_event: Optional[Callable[[JobEvent], None]] = None,
        on_done: Optional[Callable[[str, Any], None]] = None,
        timer_factory: Callable[[], Timer] = qt_timer,
        interval_ms: int = 250,
    ):
        self.task = task
        self.params = dict(params)
        self.workdir = Path(workdir)
        self.module = module
        self.resume = resume
        self.python = python or slicer_python()
        self.env = env
        self.on_progress = on_progress
        self.on_event = on_event
        self.on_done = on_done
        self.interval_ms = interval_ms
        self.job: Job | None = None
        self._timer = timer_factory()
        self._timer.timeout.connect(self._tick)

    @property
    def is_running(self) -> bool:
        """True from :meth:`start` until ``on_done`` was dispatched."""
        return self.job is not None and self.job.state == "running"

    def start(self) -> None:
        """Launch the job process and start polling; returns at once."""
        if self.is_running:
            raise JobError(f"job {self.task!r} is already running in {self.workdir}")
        self.job = Job.start(
            self.task,
            self.params,
            self.workdir,
            module=self.module,
            python=self.python,
            env=self.env,
            resume=self.resume,
        )
        self._timer.start(self.interval_ms)

    def cancel(self) -> None:
        """Ask the job's process tree to stop; ``on_done("cancelled", reason)`` follows on a later tick."""
        if self.is_running:
            self.job.cancel()

    def _tick(self) -> None:
        assert self.job is not None, "the timer only runs after start()"
        for event in self.job.poll():
            if self.on_event is not None:
                self.on_event(event)
            if event.kind == "progress" and self.on_progress is not None:
                self.on_progress(float(event.data.get("fraction", 0.0)), str(event.data.get("message", "")))
        if self.job.state == "running":
            return
        # Stop before calling back: an exception in on_done must not leave the timer firing.
        self._timer.stop()
        if self.on_done is not None:
            outcome = self.job.result if self.job.state == "finished" else self.job.reason
            self.on_done(self.job.state, outcome)
