"""Scenes: what the Slicer application sets up at start-up (done by hand when running without it),
saving and loading them, and reading or writing any node through its storage node."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import slicer

from ..atomic import atomic_path
from ..errors import InputError


def ensure_core_logic(scene) -> None:
    """Register segmentation converter rules and default colour tables unless already there.

    The Slicer application does both at start-up; the ``slicer-core`` wheel does neither, and without
    the rules a segmentation cannot convert labelmaps to surfaces (or be written with them).
    """
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    if len(factory.GetConverterRules()) == 0:
        for rule in (
            slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule,
            slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule,
            slicer.vtkClosedSurfaceToFractionalLabelmapConversionRule,
            slicer.vtkFractionalLabelmapToClosedSurfaceConversionRule,
        ):
            factory.RegisterConverterRule(rule())
    if scene.GetFirstNodeByClass("vtkMRMLColorTableNode") is None:
        color_logic = slicer.vtkMRMLColorLogic()
        color_logic.SetMRMLScene(scene)
        color_logic.AddDefaultColorNodes()
        # The logic only populates the scene; it must not keep observing it.
        color_logic.SetMRMLScene(None)


def new_scene():
    """A fresh ``vtkMRMLScene`` ready for volumes and segmentations (headless use)."""
    scene = slicer.vtkMRMLScene()
    ensure_core_logic(scene)
    return scene


def save_scene(scene, mrml_path: str | Path) -> Path:
    """Write every changed storable node that has a storage node file name, then the ``.mrml`` file.

    Data files are written where their storage nodes point (relative names are taken relative to
    the scene file's folder), so a scene folder opens in 3D Slicer as it is.
    """
    mrml_path = Path(mrml_path).resolve()
    root = mrml_path.parent
    root.mkdir(parents=True, exist_ok=True)
    scene.SetRootDirectory(str(root))
    scene.SetURL(str(mrml_path))
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLStorableNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLStorableNode")
        storage = node.GetStorageNode()
        if storage is None or not storage.GetFileName():
            continue
        file_name = Path(storage.GetFileName())
        if not file_name.is_absolute():
            file_name = root / file_name
            storage.SetFileName(str(file_name))
        if file_name.exists() and not node.GetModifiedSinceRead():
            continue  # already on disk and unchanged since written or read
        if not storage.WriteData(node):
            raise InputError(f"could not write node '{node.GetName()}'", file_name)
    if not scene.Commit():
        raise InputError("could not write the scene file", mrml_path)
    return mrml_path


def load_scene(mrml_path: str | Path, scene=None):
    """Read a ``.mrml`` scene and the data files its storage nodes name; returns the scene."""
    mrml_path = Path(mrml_path).resolve()
    if not mrml_path.is_file():
        raise InputError("does not exist", mrml_path)
    scene = scene or new_scene()
    scene.SetURL(str(mrml_path))
    if not scene.Import():
        raise InputError("is not a readable MRML scene", mrml_path)
    return scene


def read_with_storage_node(scene, node, storage, path: Path, problem: str,
                           check: Callable[[object], None] = lambda node: None):
    """Add ``node`` and ``storage`` to ``scene`` and read ``path`` into the node.

    When reading fails (``problem`` names why) or ``check(node)`` raises an :class:`InputError`, both
    nodes are removed again, so a bad file leaves the scene as it was.
    """
    storage.SetFileName(str(path))
    scene.AddNode(storage)
    scene.AddNode(node)
    node.SetAndObserveStorageNodeID(storage.GetID())
    try:
        if not storage.ReadData(node):
            raise InputError(problem, path)
        check(node)
    except InputError:
        scene.RemoveNode(node)
        scene.RemoveNode(storage)
        raise
    return node


def write_with_storage_node(node, storage, path: str | Path) -> Path:
    """Write ``node`` through ``storage`` to ``path`` atomically; the storage node then points at ``path``.

    The data goes to a temporary name with the same extension first (the writer is chosen by it),
    so an existing file is replaced only by a complete one.
    """
    path = Path(path)
    name = path.name
    storage.SetUseCompression(1)
    try:
        with atomic_path(path, suffix=name[name.index("."):] if "." in name else "") as temp:
            storage.SetFileName(str(temp))
            if not storage.WriteData(node):
                raise InputError(f"could not write '{node.GetName()}'", path)
    finally:
        storage.SetFileName(str(path))
    return path


def attached_storage_node(node, storage_class: str | None = None):
    """The node's storage node, created (of ``storage_class`` or the node's default) when it has none."""
    storage = node.GetStorageNode()
    if storage is None:
        storage = getattr(slicer, storage_class)() if storage_class else node.CreateDefaultStorageNode()
        node.GetScene().AddNode(storage)
        node.SetAndObserveStorageNodeID(storage.GetID())
    return storage
