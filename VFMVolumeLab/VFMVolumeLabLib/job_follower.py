"""Follow a job from Slicer without blocking the GUI: a timer polls it and calls back.

The job is a :class:`vfmlab.client.jobs.ServerJob` (the panels run their work on the model server) or
a local :class:`vfmlab.jobs.Job`; both have ``poll()``, ``cancel()``, ``state``, ``result`` and ``reason``.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Protocol

from vfmlab.client import ServerError
from vfmlab.errors import JobError
from vfmlab.jobs import JobEvent


class Timer(Protocol):
    """The part of ``qt.QTimer`` used here."""

    timeout: Any  # a signal: ``timeout.connect(callable)``

    def start(self, msec: int) -> None: ...

    def stop(self) -> None: ...


def qt_timer() -> Timer:
    """Default timer factory; imports qt lazily so this module imports in plain Python."""
    import qt

    return qt.QTimer()


class ManualTimer:
    """A timer fired by hand (:meth:`fire`): for self-tests and scripts that wait on the main thread,
    where a ``qt.QTimer`` would not fire, and for tests without Qt."""

    def __init__(self) -> None:
        self.slots: list[Callable[[], Any]] = []
        self.active = False
        self.timeout = self  # the ``timeout`` signal: ``timer.timeout.connect(slot)``

    def connect(self, slot: Callable[[], Any]) -> None:
        self.slots.append(slot)

    def start(self, msec: int) -> None:
        self.active = True

    def stop(self) -> None:
        self.active = False

    def fire(self) -> None:
        for slot in self.slots:
            slot()


class ManualTimers(list):
    """A ``timer_factory`` of :class:`ManualTimer` s that keeps them, newest last."""

    def __call__(self) -> ManualTimer:
        self.append(ManualTimer())
        return self[-1]

    def run_until(self, condition: Callable[[], Any], timeout: float, interval: float = 0.1) -> None:
        """Fire the active timers until ``condition()`` holds; :class:`JobError` after ``timeout`` seconds."""
        import time

        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise JobError(f"still waiting after {timeout:g} s")
            for timer in [timer for timer in self if timer.active]:
                timer.fire()
            time.sleep(interval)


class JobFollower:
    """Starts a job with ``start()`` and polls it on a timer, dispatching callbacks.

    ``on_progress(fraction, message)`` for progress events, ``on_event(event)`` for every event,
    ``on_done(state, result_or_reason)`` once: the task's result when ``state == "finished"``, the
    reason otherwise (a server that stopped answering ends the job as ``failed`` with its message).
    """

    def __init__(
        self,
        start: Callable[[], Any],
        *,
        on_progress: Optional[Callable[[float, str], None]] = None,
        on_event: Optional[Callable[[JobEvent], None]] = None,
        on_done: Optional[Callable[[str, Any], None]] = None,
        timer_factory: Callable[[], Timer] = qt_timer,
        interval_ms: int = 250,
    ):
        self._start = start
        self.on_progress = on_progress
        self.on_event = on_event
        self.on_done = on_done
        self.interval_ms = interval_ms
        self.job: Any = None
        self._ended = False
        self._timer = timer_factory()
        self._timer.timeout.connect(self._tick)

    @property
    def is_running(self) -> bool:
        """True from :meth:`start` until ``on_done`` was dispatched."""
        return self.job is not None and not self._ended

    def start(self) -> "JobFollower":
        """Start the job and the polling; returns at once (self, for chaining)."""
        if self.is_running:
            raise JobError("this job is already running")
        self.job = self._start()
        self._ended = False
        self._timer.start(self.interval_ms)
        return self

    def cancel(self) -> None:
        """Ask the job to stop; ``on_done("cancelled", reason)`` follows on a later tick."""
        if self.is_running:
            try:
                self.job.cancel()
            except ServerError as error:
                self._end("failed", str(error))

    def detach(self) -> None:
        """Stop polling without touching the job (it goes on; no callback follows)."""
        self._timer.stop()
        self._ended = True

    def _tick(self) -> None:
        if not self.is_running:
            self._timer.stop()
            return
        try:
            events = self.job.poll()
        except ServerError as error:
            self._end("failed", str(error))
            return
        for event in events:
            if self.on_event is not None:
                self.on_event(event)
            if event.kind == "progress" and self.on_progress is not None:
                self.on_progress(float(event.data.get("fraction", 0.0)), str(event.data.get("message", "")))
        if self.job.state != "running":
            self._end(self.job.state, self.job.result if self.job.state == "finished" else self.job.reason)

    def _end(self, state: str, outcome: Any) -> None:
        # Stop before calling back: an exception in on_done must not leave the timer firing.
        self._timer.stop()
        self._ended = True
        if self.on_done is not None:
            self.on_done(state, outcome)
