"""The sample CT shipped with the extension (``Resources/SampleData``), with its reference organ labels.

The folder sits beside the ``vfmlab`` package both in a source checkout and in an installed Slicer
extension (both are installed into Slicer's scripted-modules folder), so one lookup serves both.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import InputError


def sample_data_dir() -> Path:
    """``Resources/SampleData`` next to the package, or ``$VFMLAB_SAMPLE_DATA`` when set."""
    folder = Path(os.environ.get("VFMLAB_SAMPLE_DATA", Path(__file__).resolve().parents[1] / "Resources" / "SampleData"))
    if not folder.is_dir():
        raise InputError(
            "sample data folder not found; it ships with a source checkout and the Slicer extension "
            "(a plain pip install has none): set VFMLAB_SAMPLE_DATA to a folder holding VFMSampleCT.nii.gz",
            folder,
        )
    return folder


def sample_ct_path() -> Path:
    return sample_data_dir() / "VFMSampleCT.nii.gz"


def sample_labels_path() -> Path:
    return sample_data_dir() / "VFMSampleCT_labels.nii.gz"


def sample_label_names() -> dict[int, str]:
    """Label value → organ name of the sample's reference labels."""
    names = json.loads((sample_data_dir() / "VFMSampleCT_label_names.json").read_text())["labels"]
    return {int(value): name for value, name in names.items()}
