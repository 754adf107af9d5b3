"""How long work reports: one protocol (:class:`Reporting`), the silent and terminal reporters, the
terminal's progress bar for commands whose core takes a ``progress(fraction, message)`` callback, and
its counter for work counted in units. The one module that draws terminal bars (tqdm).

:class:`vfmlab.jobs.Reporter` (JSON-lines events of a background job) is the other implementation.
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

Progress = Callable[[float, str], None]
"""Called as ``progress(fraction_done_0_to_1, message)`` by long work in the core."""


class Reporting(Protocol):
    """What long work reports to: progress of the whole (0..1), named metrics, files it wrote, log lines."""

    def progress(self, fraction: float, message: str = "") -> Any: ...

    def metric(self, name: str, value: float, step: int | None = None) -> Any: ...

    def artifact(self, kind: str, path: Any) -> Any: ...

    def log(self, message: str) -> Any: ...


class SilentReporter:
    """Reports nowhere: the default when a caller passes no reporter."""

    def progress(self, fraction: float, message: str = "") -> None:
        pass

    def metric(self, name: str, value: float, step: int | None = None) -> None:
        pass

    def artifact(self, kind: str, path: Any) -> None:
        pass

    def log(self, message: str) -> None:
        pass


class ScaledReporter:
    """Maps a part's progress 0..1 onto ``[start, start + span]`` of the whole, prefixing its messages."""

    def __init__(self, parent: Reporting, start: float, span: float, prefix: str):
        self.parent, self.start, self.span, self.prefix = parent, start, span, prefix

    def progress(self, fraction: float, message: str = "") -> None:
        self.parent.progress(self.start + self.span * fraction, f"{self.prefix}: {message}")

    def metric(self, name: str, value: float, step: int | None = None) -> None:
        self.parent.metric(f"{self.prefix}/{name}", value, step)

    def artifact(self, kind: str, path: Any) -> None:
        self.parent.artifact(f"{self.prefix}/{kind}", path)

    def log(self, message: str) -> None:
        self.parent.log(f"{self.prefix}: {message}")


class TerminalReporter:
    """A tqdm bar on stderr over the whole work, the latest message beside it, log lines above it."""

    def __init__(self, description: str = ""):
        from tqdm import tqdm

        self.bar = tqdm(total=1000, desc=description, file=sys.stderr, bar_format="{l_bar}{bar}| {elapsed}<{remaining}")

    def progress(self, fraction: float, message: str = "") -> None:
        self.bar.update(max(0, round(fraction * 1000) - self.bar.n))  # never backwards: a resumed part restarts
        self.bar.set_postfix_str(message[-70:], refresh=False)

    def metric(self, name: str, value: float, step: int | None = None) -> None:
        pass

    def artifact(self, kind: str, path: Any) -> None:
        pass

    def log(self, message: str) -> None:
        self.bar.write(message, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


@contextmanager
def terminal_progress(description: str = "") -> Iterator[Progress]:
    """A :class:`TerminalReporter` for the duration; yields its ``progress`` callback to hand down."""
    reporter = TerminalReporter(description)
    try:
        yield reporter.progress
    finally:
        reporter.close()


class TerminalCounter:
    """A tqdm counter on stderr for work counted in units whose total may be unknown ahead (slices
    propagated, views rendered, demo steps, bytes downloaded)."""

    def __init__(self, description: str = "", total: int | None = None, unit: str = "step", bytes_: bool = False):
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=description, unit="B" if bytes_ else unit, unit_scale=bytes_,
                        file=sys.stderr, leave=not bytes_)

    def advance(self, count: int = 1, message: str | None = None) -> None:
        """``count`` more units done; ``message`` replaces the description."""
        if message is not None:
            self.bar.set_description(message, refresh=False)
        self.bar.update(count)

    def close(self) -> None:
        self.bar.close()


@contextmanager
def terminal_counter(description: str = "", total: int | None = None, unit: str = "step") -> Iterator[TerminalCounter]:
    """A :class:`TerminalCounter` for the duration."""
    counter = TerminalCounter(description, total, unit)
    try:
        yield counter
    finally:
        counter.close()
