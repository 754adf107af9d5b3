"""Task registry: job configs name a task, modules register the functions that implement them."""
from __future__ import annotations

from typing import Any, Callable, Optional

from vfmlab.errors import JobError
from vfmlab.jobs.events import Reporter

TaskFn = Callable[[dict[str, Any], Reporter], Optional[dict[str, Any]]]

_TASKS: dict[str, TaskFn] = {}


def register_task(name: str) -> Callable[[TaskFn], TaskFn]:
    """Decorator: make ``fn(params, reporter) -> dict | None`` runnable as job task ``name``."""

    def decorator(fn: TaskFn) -> TaskFn:
        previous = _TASKS.get(name)
        # The same function may register twice (module imported under two names, or reloaded);
        # a different function claiming the name is a programming error that would silently win.
        if previous is not None and _qualified(previous) != _qualified(fn):
            raise JobError(f"task {name!r} is already registered by {_qualified(previous)}")
        _TASKS[name] = fn
        return fn

    return decorator


def get_task(name: str) -> TaskFn:
    """The function registered as ``name``; the error lists the known tasks."""
    try:
        return _TASKS[name]
    except KeyError:
        known = ", ".join(known_tasks()) or "none"
        raise JobError(f"unknown task {name!r}; known tasks: {known}") from None


def known_tasks() -> list[str]:
    """Names of all registered tasks, sorted."""
    return sorted(_TASKS)


def _qualified(fn: TaskFn) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
