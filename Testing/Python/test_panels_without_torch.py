"""The Slicer modules never run model code in Slicer's process, and open when torch is broken or absent.

Statically: no file under ``VFMVolumeLab/`` or ``SegmentationTools/`` imports a model package anywhere (a
function-level import runs once the panel calls it), and no vfmlab module they import pulls one in when it
is loaded. Dynamically: in a Python where torch and the model packages cannot be imported, every panel
module and both module files import, and the segment panel's logic segments a real CT through a real
local model server (which has torch: it is another process).
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import REPO_ROOT

PANEL_FOLDERS = ("VFMVolumeLab", "SegmentationTools")
MODEL_PACKAGES = {"torch", "torchvision", "timm", "monai", "segment_anything", "segment_anything_hq", "onnxruntime",
                  "pytorch_msssim"}
SEARCH_ROOTS = (REPO_ROOT, REPO_ROOT / "VFMVolumeLab", REPO_ROOT / "SegmentationTools")


def _module_file(name: str) -> Path | None:
    for root in SEARCH_ROOTS:
        base = root.joinpath(*name.split("."))
        for candidate in (base / "__init__.py", base.with_suffix(".py")):
            if candidate.is_file():
                return candidate
    return None


def _package_of(path: Path) -> list[str]:
    root = next(r for r in SEARCH_ROOTS[::-1] if path.is_relative_to(r))
    parts = list(path.relative_to(root).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts[:-1]


def _imported_names(path: Path, load_time_only: bool) -> list[str]:
    """Modules an import statement in ``path`` names (``from a import b``: ``a`` and ``a.b``). With
    ``load_time_only``, only statements that run when the module is loaded: not in function bodies, not
    under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names: list[str] = []

    def visit(node: ast.AST) -> None:
        if load_time_only and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return
        if load_time_only and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = _package_of(path)
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            names.append(base)
            names.extend(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return names


def _model_imports_reached() -> list[str]:
    """Chains ``panel file -> ... -> model package`` (empty when the panels are clean)."""
    found, seen = [], set()
    queue = [(path, True, [str(path.relative_to(REPO_ROOT))]) for folder in PANEL_FOLDERS
             for path in sorted((REPO_ROOT / folder).rglob("*.py"))]
    while queue:
        path, whole_file, chain = queue.pop()
        for name in _imported_names(path, load_time_only=not whole_file):
            if name.split(".")[0] in MODEL_PACKAGES:
                found.append(" -> ".join([*chain, name]))
                continue
            parts = name.split(".")
            for depth in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__, a/b/c
                target = _module_file(".".join(parts[:depth]))
                if target is None or (target, whole_file and target.is_relative_to(REPO_ROOT / "vfmlab")) in seen:
                    continue
                panel_file = any(target.is_relative_to(REPO_ROOT / folder) for folder in PANEL_FOLDERS)
                seen.add((target, False))
                queue.append((target, panel_file, [*chain, str(target.relative_to(REPO_ROOT))]))
    return sorted(set(found))


def test_no_panel_file_reaches_a_model_package():
    reached = _model_imports_reached()
    assert not reached, "model code would run in Slicer's process:\n" + "\n".join(reached)


def test_the_check_finds_a_model_import_where_there_is_one():
    """The walk itself works: a vfmlab module that imports torch when loaded is found behind a panel file."""
    assert _imported_names(REPO_ROOT / "vfmlab" / "dvr" / "transfer_functions.py", load_time_only=True).count("torch")
    assert "torch" not in _imported_names(REPO_ROOT / "vfmlab" / "atomic.py", load_time_only=True)
    assert "torch" in _imported_names(REPO_ROOT / "vfmlab" / "atomic.py", load_time_only=False)


# Runs in a fresh interpreter: torch & co. cannot be imported; Slicer's application-only modules are stood in.
WITHOUT_TORCH = textwrap.dedent("""
    import importlib, importlib.abc, json, sys, types
    from pathlib import Path

    BLOCKED = set(json.loads(sys.argv[1]))

    class Broken(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
            return None

    sys.meta_path.insert(0, Broken())
    root = Path(sys.argv[2])
    sys.path[:0] = [str(root), str(root / "VFMVolumeLab"), str(root / "SegmentationTools")]

    import slicer  # the slicer-core wheel: MRML and logic classes; the application's modules are stood in
    class Stand:
        def __init__(self, *args, **kwargs): pass
    stand_ins = {
        "qt": {}, "ctk": {},
        "slicer.ScriptedLoadableModule": {n: type(n, (Stand,), {}) for n in (
            "ScriptedLoadableModule", "ScriptedLoadableModuleWidget", "ScriptedLoadableModuleLogic",
            "ScriptedLoadableModuleTest")},
        "slicer.parameterNodeWrapper": {"parameterNodeWrapper": lambda cls: cls, "Choice": Stand, "Default": Stand},
    }
    for name, attributes in stand_ins.items():
        module = types.ModuleType(name)
        module.__dict__.update(attributes)
        sys.modules[name] = module
    if not hasattr(slicer.util, "VTKObservationMixin"):
        slicer.util.VTKObservationMixin = Stand

    imported = []
    for folder, package in (("VFMVolumeLab", "VFMVolumeLabLib"), ("SegmentationTools", "SegmentationToolsLib")):
        importlib.import_module(folder)
        imported.append(folder)
        for path in sorted((root / folder / package).glob("*.py")):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            importlib.import_module(name)
            imported.append(name)

    # The segment panel's logic, end to end, through a local server (torch lives there, not here).
    import numpy as np
    from vfmlab import mrml
    from vfmlab.client import ServerConnection
    from vfmlab.mrml.markups import SlicePrompt
    from vfmlab.slices import SliceStack
    from vfmlab.volume_io import read_labels, read_volume
    from SegmentationToolsLib.segment_logic import SegmentSession, metrics_rows

    ct_path, labels_path, folder = sys.argv[3], sys.argv[4], sys.argv[5]
    scene = mrml.new_scene()
    ct = read_volume(ct_path)
    volume_node = mrml.add_volume_node(scene, ct, name="CT")
    kidney = SliceStack.of(ct, "axial").view(read_labels(labels_path, ct) == 2)
    index = int(np.argmax(kidney.sum(axis=(1, 2))))
    rows, cols = np.nonzero(kidney[index])
    connection = ServerConnection(folder=folder, options=("--device", "cpu"), env={"OMP_NUM_THREADS": "1"})
    import time
    deadline = time.monotonic() + 180
    while (client := connection.client()) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        session = SegmentSession(volume_node, client, "litemedsam")
        prompt = SlicePrompt("axial", index, (cols.min(), rows.min(), cols.max(), rows.max()), None, None)
        segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
        result = session.segment(prompt, segmentation, "kidney")
        reference = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
        reference_mask = np.zeros(ct.array.shape, bool)
        SliceStack.of(ct, "axial").view(reference_mask)[index] = kidney[index]
        reference_id = mrml.add_segment(reference, reference_mask, volume_node, "reference")
        row = metrics_rows(client, volume_node, segmentation, [result.segment_id], reference, [reference_id])[0]
    finally:
        connection.stop()
    loaded = sorted(name for name in sys.modules if name.split(".")[0] in BLOCKED)
    print(json.dumps({"imported": imported, "dice": row["dice"], "model_modules_loaded": loaded}))
""")


def test_modules_open_and_segment_through_a_server_without_torch(shared_data, tmp_path):
    ct = shared_data / "totalseg" / "example_ct.nii.gz"
    labels = shared_data / "totalseg" / "example_seg_fast_force_split.nii.gz"
    completed = subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH, json.dumps(sorted(MODEL_PACKAGES)), str(REPO_ROOT), str(ct),
         str(labels), str(tmp_path / "server")],
        capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert {"VFMVolumeLab", "SegmentationTools", "VFMVolumeLabLib.server_link",
            "SegmentationToolsLib.segment_widget", "VFMVolumeLabLib.dvr_widget"} <= set(report["imported"])
    assert report["model_modules_loaded"] == []
    print(f"right kidney, one slice, segmented from a torch-less process through the server: Dice {report['dice']:.3f}")
    assert report["dice"] > 0.8
