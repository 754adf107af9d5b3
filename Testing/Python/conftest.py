"""Shared fixtures: the real data folder beside the repository, and fresh MRML scenes."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("VFMLAB_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``: real CTs, DICOM series and label maps (see its README)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real test data not found at {SHARED_DATA}; set VFMLAB_SHARED_DATA")
    return SHARED_DATA


@pytest.fixture
def scene():
    """A fresh headless MRML scene from the slicer-core wheel, set up as the Slicer app would."""
    from vfmlab.mrml import new_scene

    scene = new_scene()
    yield scene
    scene.Clear(1)
