"""The terminal's progress bar for commands whose core reports ``progress(fraction, message)``."""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Progress = Callable[[float, str], None]
"""Called as ``progress(fraction_done_0_to_1, message)`` by long work in the core."""


@contextmanager
def terminal_progress(description: str = "") -> Iterator[Progress]:
    """A tqdm bar on stderr over the whole work (percent); yields the ``progress`` callback to hand down."""
    from tqdm import tqdm

    with tqdm(total=100, unit="%", desc=description, file=sys.stderr) as bar:
        def progress(fraction: float, message: str = "") -> None:
            if message:
                bar.set_description(message)
            bar.update(max(0, round(100 * fraction) - bar.n))  # never backwards: a resumed stage restarts at 0

        yield progress
