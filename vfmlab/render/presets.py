"""Slicer's volume-rendering presets shipped with the extension (``Resources/VolumeRendering/presets.xml``).

The folder sits beside the ``vfmlab`` package in a source checkout and in the installed Slicer extension,
found the same way as :mod:`vfmlab.sample_data` finds ``Resources/SampleData``. Slicer's volume rendering
logic reads ``presets.xml`` from its module share directory, which :mod:`vfmlab.mrml.volume_rendering`
points at this folder; the listing here only parses the XML, so it works without ``slicer``.
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ElementTree
from functools import lru_cache
from pathlib import Path

from ..errors import InputError

PRESETS_FILE = "presets.xml"
ENV_VAR = "VFMLAB_VR_PRESETS_DIR"


def presets_dir() -> Path:
    """``Resources/VolumeRendering`` next to the package, or ``$VFMLAB_VR_PRESETS_DIR`` when set."""
    default = Path(__file__).resolve().parents[2] / "Resources" / "VolumeRendering"
    folder = Path(os.environ.get(ENV_VAR, default))
    if not (folder / PRESETS_FILE).is_file():
        raise InputError(
            f"Slicer's volume rendering presets ({PRESETS_FILE}) are not in this folder; they ship with a source "
            f"checkout and the Slicer extension: set {ENV_VAR} to a folder holding {PRESETS_FILE}",
            folder,
        )
    return folder


def presets_path() -> Path:
    return presets_dir() / PRESETS_FILE


@lru_cache(maxsize=4)
def _read(path: Path) -> dict[str, dict[str, str]]:
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as error:
        raise InputError(f"is not a readable presets file ({error})", path) from None
    return {element.get("name"): dict(element.attrib) for element in root.iter("VolumeProperty")}


def preset_names() -> list[str]:
    """Preset names in the file's order (the order Slicer's preset menu shows)."""
    return list(_read(presets_path()))


def preset_attributes(name: str) -> dict[str, str]:
    """The preset's XML attributes (``colorTransfer``, ``scalarOpacity``, ``shade``...) as Slicer stores them."""
    presets = _read(presets_path())
    if name not in presets:
        raise InputError(f"unknown volume rendering preset '{name}'; presets: {', '.join(presets)}")
    return presets[name]


def check_preset(name: str) -> str:
    """``name`` if it is a preset, else an :class:`InputError` listing the presets."""
    preset_attributes(name)
    return name
