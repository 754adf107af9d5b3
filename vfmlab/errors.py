"""Errors that carry a message a user can act on.

Every error raised for bad input derives from :class:`VfmlabError`; the CLI prints its message on
one line and exits non-zero, the Slicer modules show it in a message box.
"""
from __future__ import annotations

from pathlib import Path


class VfmlabError(Exception):
    """Base class: the message says what is wrong and, where possible, what to do."""


class InputError(VfmlabError):
    """A file or array is not what the operation needs (wrong dimension, NaNs, corrupt, mismatched)."""

    def __init__(self, problem: str, path: str | Path | None = None):
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)


class WeightsError(VfmlabError):
    """Model weights are missing, corrupt, fail their checksum, or belong to another architecture."""


class JobError(VfmlabError):
    """A background job could not be started or failed."""
