"""Import a label map file (NRRD, NIfTI, MHA) as a new segmentation on a volume's grid.

Segment names come from a JSON file beside the label map when there is one (see
:func:`find_label_names_file`); otherwise segments are called "Label <value>".
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

LABEL_MAP_FILE_FILTER = "Label maps (*.nrrd *.nhdr *.nii *.nii.gz *.mha *.mhd);;All files (*)"


def find_label_names_file(path: str | Path) -> Optional[Path]:
    """The names file of a label map, if present: for ``X.nii.gz`` (or ``X_labels.nii.gz``) the first of
    ``X.json``, ``X_names.json``, ``X_label_names.json`` (and ``X_label_names.json`` for ``X_labels``)."""
    from vfmlab.volume_io import stem as file_stem

    path = Path(path)
    stem = file_stem(path)
    candidates = [f"{stem}.json", f"{stem}_names.json", f"{stem}_label_names.json"]
    if stem.endswith("_labels"):
        candidates.append(f"{stem[: -len('_labels')]}_label_names.json")
    for name in candidates:
        candidate = path.with_name(name)
        if candidate.is_file():
            return candidate
    return None


def read_label_names(path: str | Path) -> dict[int, str]:
    """Label value → name from ``{"labels": {"1": "spleen", ...}}`` or a flat ``{"1": "spleen", ...}``.

    Entries whose key is not an integer or whose value is not a string are ignored, so a JSON file
    that is not a names file yields ``{}`` rather than wrong names.
    """
    from vfmlab.errors import InputError

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"is not a readable label-names JSON file ({error})", path) from None
    if isinstance(data, dict) and isinstance(data.get("labels"), dict):
        data = data["labels"]
    if not isinstance(data, dict):
        return {}
    names = {}
    for key, value in data.items():
        try:
            names[int(key)] = value
        except (TypeError, ValueError):
            continue
    return {key: value for key, value in names.items() if isinstance(value, str)}


def import_label_map(scene, path: str | Path, reference_node, names: Optional[dict[int, str]] = None,
                     node_name: Optional[str] = None):
    """Read the label map at ``path`` (it must lie on ``reference_node``'s voxel grid) into a NEW
    segmentation node; returns the node. Raises :class:`vfmlab.errors.InputError` with a message for
    the user and leaves the scene as it was when the file is unreadable, not a label map, or on
    another grid."""
    from vfmlab.errors import InputError
    from vfmlab.volume_io import read_labels
    from vfmlab.volume_io import stem as file_stem
    from vfmlab.mrml import add_segmentation_from_labels, volume_from_node

    if reference_node is None:
        raise InputError("select the volume the label map belongs to first")
    path = Path(path)
    labels = read_labels(path, volume_from_node(reference_node))
    if names is None:
        names_file = find_label_names_file(path)
        names = read_label_names(names_file) if names_file is not None else {}
    return add_segmentation_from_labels(
        scene, labels, reference_node, names=names, node_name=node_name or file_stem(path)
    )
