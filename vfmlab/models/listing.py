"""What ``vfmlab models`` prints: each catalogue entry (and each fine-tuned model) with its weights status.

The status never downloads and never loads a checkpoint: ``packaged`` (inside an installed package),
``cached`` (in the weights folder), ``missing`` (with the message saying where to get it), ``trained
here`` (no published weights: the model trains from random initialisation in this lab).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import WeightsError
from .catalogue import CATALOGUE, CatalogueEntry, Family, names


def weights_status(weights: str | None, local_file: str | Path | None = None) -> dict[str, Any]:
    """``{"status": ..., "path" or "message": ...}`` for a weights entry name (None: trained here);
    ``local_file`` is a checkpoint the user names instead of the registry's (status ``local``)."""
    if weights is None:
        return {"status": "trained here"}
    from ..weights import cache_dir, resolve

    try:
        path = resolve(weights, local_file)
    except WeightsError as error:
        return {"status": "missing", "message": str(error)}
    status = "local" if local_file is not None else "cached" if path.is_relative_to(cache_dir()) else "packaged"
    return {"status": status, "path": str(path)}


def _row(entry: CatalogueEntry) -> dict[str, Any]:
    return {"name": entry.name, "families": list(entry.families), "description": entry.description,
            "weights": entry.weights, **weights_status(entry.weights)}


def fine_tuned_segmenters() -> list:
    """The user's fine-tuned models (weights registry entries) whose architecture is a catalogue segmenter."""
    from ..weights import list_models

    return [e for e in list_models() if e.is_user and e.architecture in names("segmenter")]


def segmenter_names() -> list[str]:
    """Every segmenter a user can pick: the catalogue's, then their fine-tuned ones."""
    return [*names("segmenter"), *(e.name for e in fine_tuned_segmenters())]


def _user_rows() -> list[dict[str, Any]]:
    return [{"name": user.name, "families": ["segmenter"], "weights": user.name,
             "description": f"fine-tuned {user.architecture}: {user.description}".rstrip(": "),
             **weights_status(user.name)} for user in fine_tuned_segmenters()]


def model_rows(family: Family | None = None) -> list[dict[str, Any]]:
    """Catalogue entries then fine-tuned models, only those with a role in ``family`` when given."""
    # the weights status hashes files, so only the rows asked for are looked up
    rows = [_row(entry) for entry in CATALOGUE.values() if family is None or family in entry.families]
    return rows + (_user_rows() if family in (None, "segmenter") else [])
