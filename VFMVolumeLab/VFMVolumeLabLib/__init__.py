"""Slicer-side helpers of the VFM Volume Lab modules.

Everything here imports in plain Python (no ``qt``/``ctk`` at import time), so it is tested with
pytest outside Slicer. The Slicer module files (``VFMVolumeLab.py``, ``SegmentationTools.py``) stay
thin and import these helpers lazily, inside the functions that need them.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


# The extension's documentation: its README (EXTENSION_HOMEPAGE in CMakeLists.txt). Not Slicer's
# getDefaultModuleDocumentationLink(), which points at the Slicer manual's page for built-in modules only.
DOCUMENTATION_URL = "https://github.com/vfm-volume-lab/SlicerVFMVolumeLab#readme"


def documentation_link() -> str:
    """Help-text paragraph linking to the extension's documentation."""
    return f'<p>For more information see the <a href="{DOCUMENTATION_URL}">VFM Volume Lab documentation</a>.</p>'


def ensure_vfmlab_importable() -> None:
    """Make ``import vfmlab`` work when the modules run from a source checkout.

    An installed extension puts ``vfmlab`` beside this package in Slicer's scripted-modules folder,
    which is already on ``sys.path``. A developer who adds ``VFMVolumeLab/`` and
    ``SegmentationTools/`` as additional module paths has the package one level up, at the
    repository root: that folder is added to ``sys.path`` once.
    """
    if importlib.util.find_spec("vfmlab") is not None:
        return
    for folder in Path(__file__).resolve().parents[1:3]:
        if (folder / "vfmlab" / "__init__.py").is_file():
            sys.path.insert(0, str(folder))
            return
