"""The one place that decides which torch device work runs on: a GPU when torch sees one, else the CPU."""
from __future__ import annotations

import torch

from .errors import InputError


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` or None: ``cuda`` when torch sees a GPU, else ``cpu``; any other name as torch reads it.

    A name torch does not know, or a GPU asked for where torch sees none, raises :class:`InputError`.
    """
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as error:
        raise InputError(f"unknown device '{name}' ({error}); use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device '{name}' asked for, but torch sees no GPU here; use auto or cpu")
    return device
