"""Capture volume renderings at camera poses: ``view_NNN.png``, ``labels_NNN.png`` and ``cameras.json``.

:func:`capture_views` works on nodes of any MRML scene (the Slicer application's or a headless one) and
any view that renders a :class:`CameraRecord` (the app's 3D view, or
:class:`vfmlab.mrml.volume_rendering.HeadlessThreeDView`); :func:`render_file` is the headless
``vfmlab render`` path from files.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from ..cameras import CaptureSet, CameraRecord
from ..errors import InputError
from ..volume_io import stem
from .images import LABELS_ENCODING, write_label_png, write_rgb_png
from .poses import Orbit, orbit_records
from .settings import LABEL_MODES, RenderSettings




@dataclass
class SegmentLabels:
    """Label values ``(K, J, I)`` on the rendered volume's grid with their segment names and colours.

    ``mode`` says which segment a pixel gets: ``"visible"`` (default) the first segment along the ray
    whose voxels the transfer function shows (scalar opacity >= ``visible_opacity``), so that segments the
    TF makes transparent do not hide what the capture shows; ``"first"`` the first segment along the ray,
    as if every segment were an opaque surface.
    """

    array: np.ndarray
    names: dict[int, str]
    colors: dict[int, tuple[float, float, float]] = field(default_factory=dict)
    mode: str = "visible"
    visible_opacity: float = 0.05

    def __post_init__(self) -> None:
        if self.mode not in LABEL_MODES:
            raise InputError(f"segment-ID mode must be one of {LABEL_MODES}, got '{self.mode}'")

    def values(self) -> list[int]:
        return [int(v) for v in np.unique(self.array) if v != 0]


class CaptureView(Protocol):
    """What renders a view: the headless view or an adapter over the Slicer app's 3D view."""

    def render(self, record: CameraRecord) -> np.ndarray: ...


def capture_views(
    scene,
    volume_node,
    records: list[CameraRecord],
    out_dir: str | Path,
    settings: RenderSettings,
    *,
    logic=None,
    view: CaptureView | None = None,
    labels: SegmentLabels | None = None,
    source_path: str | Path | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> CaptureSet:
    """Render ``volume_node`` from each record (and its segment IDs when ``labels`` is given) into ``out_dir``.

    ``logic``: a volume rendering logic on ``scene`` (the app's; a headless one is made when None).
    ``view``: renders the volume's display node; when None a headless view of ``settings``' size is used.
    Segment IDs always render headless, restricted to a private view node. Returns the saved capture set.
    """
    from .. import mrml
    from ..mrml import volume_rendering as vr

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    volume = mrml.volume_from_node(volume_node)
    if labels is not None:
        from ..volume_io import check_labels

        check_labels(labels.array, volume)
    own_logic = logic is None
    logic = logic or vr.volume_rendering_logic(scene)
    steps = len(records) * (2 if labels is not None else 1)
    report = progress or (lambda fraction, message: None)
    headless = None
    try:
        display = vr.show_volume(logic, volume_node, settings.method, settings.preset, settings.shift,
                                 settings.shading, settings.transfer_function)
        if view is None:
            headless = view = vr.HeadlessThreeDView(scene, settings.width, settings.height, settings.background)
        for index, record in enumerate(records):
            report(index / steps, f"rendering view {index + 1}/{len(records)}")
            write_rgb_png(out_dir / record.image, view.render(record))
        if labels is not None:
            records = _capture_labels(scene, logic, display, volume, labels, records, out_dir, settings,
                                      lambda n: report((len(records) + n) / steps,
                                                       f"rendering segment IDs {n + 1}/{len(records)}"),
                                      beside_app_views=headless is None)
        report(1.0, "capture written")
        capture = _capture_set(records, volume, display, settings, labels, source_path)
        capture.save(out_dir)
        return capture
    finally:
        if headless is not None:
            headless.close()
        if own_logic:
            logic.SetMRMLScene(None)


def _capture_set(records: list[CameraRecord], volume, display, settings: RenderSettings,
                 labels: SegmentLabels | None, source_path: str | Path | None) -> CaptureSet:
    """The record of a capture: its views, the volume's geometry and source, and the renderer's settings."""
    from ..mrml import volume_rendering as vr

    return CaptureSet(
        views=records,
        volume_path=str(Path(source_path).resolve()) if source_path else None,
        volume_sha256=source_sha256(Path(source_path)) if source_path else None,
        ijk_to_ras=volume.ijk_to_ras.tolist(),
        transfer_function=vr.transfer_function_record(display, settings.preset, settings.shift),
        sample_distance=float(display.GetSampleDistance()),
        background=tuple(float(c) for c in settings.background),
        renderer={"name": "slicer-volume-rendering", "method": settings.method,
                  "display_node": display.GetClassName(),
                  "displayable_manager": "vtkMRMLVolumeRenderingDisplayableManager",
                  "volume_shape_ijk": list(volume.shape_ijk)},
        labels=_labels_record(labels) if labels is not None else {},
    )


def source_sha256(path: Path) -> str:
    """sha256 of the volume file; for a DICOM folder, sha256 over its files' sha256 digests in file-name order."""
    import hashlib

    from ..weights.files import sha256_of

    if path.is_file():
        return sha256_of(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.iterdir() if p.is_file()):
        digest.update(bytes.fromhex(sha256_of(file)))
    return digest.hexdigest()


def _capture_labels(scene, logic, display, volume, labels: SegmentLabels, records, out_dir: Path,
                    settings: RenderSettings, progress, beside_app_views: bool) -> list[CameraRecord]:
    from .. import mrml
    from ..mrml import volume_rendering as vr

    values = labels.values()
    if not values:
        raise InputError("the segmentation is empty; there are no segment IDs to render")
    array = labels.array.astype(np.uint16)
    if labels.mode == "visible":
        tf = vr.transfer_function_record(display)
        opacity = np.asarray(tf["scalar_opacity"], float)
        array = np.where(np.interp(volume.array, opacity[:, 0], opacity[:, 1]) >= labels.visible_opacity, array, 0)
    label_node = mrml.add_volume_node(scene, volume.with_array(array.astype(np.uint16)), name="vfmlab segment IDs")
    label_node.SetHideFromEditors(True)
    was_visible = display.GetVisibility()
    display.SetVisibility(False)  # the label pass must see the labels only
    view = vr.HeadlessThreeDView(scene, settings.width, settings.height, (0.0, 0.0, 0.0), beside_app_views)
    try:
        vr.show_label_ids(logic, label_node, values, view.view_node)
        out = []
        for index, record in enumerate(records):
            progress(index)
            name = record.image.replace("view_", "labels_", 1) if "view_" in record.image \
                else f"labels_{Path(record.image).stem}.png"
            ids = vr.decode_label_ids(view.render(record), set(values))
            write_label_png(out_dir / name, ids)
            out.append(replace(record, labels_image=name))
        return out
    finally:
        view.close()
        vr.remove_volume_node(label_node)
        display.SetVisibility(was_visible)


def _labels_record(labels: SegmentLabels) -> dict:
    segments = {}
    for value in labels.values():
        entry = {"name": labels.names.get(value, f"Label {value}")}
        if value in labels.colors:
            entry["color"] = [float(c) for c in labels.colors[value]]
        segments[str(value)] = entry
    return {"encoding": LABELS_ENCODING, "mode": labels.mode, "visible_opacity": labels.visible_opacity,
            "segments": segments}


def read_label_names(path: str | Path) -> dict[int, str]:
    """Label value → name from JSON: ``{"1": "liver", ...}`` or ``{"labels": {...}}`` (the sample's format)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        data = data.get("labels", data)
        return {int(value): str(name) for value, name in data.items()}
    except (OSError, ValueError, AttributeError) as error:
        raise InputError(f"is not a label-name JSON file ({error})", path) from None


def load_segment_labels(scene, volume_node, path: str | Path, names: dict[int, str] | None = None,
                        mode: str = "visible") -> SegmentLabels:
    """Segment labels on the volume's grid from a ``.seg.nrrd`` (values 1..N in segment order) or a label map."""
    from .. import mrml
    from ..volume_io import read_labels

    path = Path(path)
    if path.name.lower().endswith(".seg.nrrd"):
        segmentation_node = mrml.load_segmentation_node(scene, path)
        try:
            array, seg_names = mrml.labels_from_segmentation(segmentation_node, volume_node)
            segmentation = segmentation_node.GetSegmentation()
            colors = {n + 1: tuple(segmentation.GetNthSegment(n).GetColor())
                      for n in range(segmentation.GetNumberOfSegments())}
        finally:
            display = segmentation_node.GetDisplayNode()
            if display is not None:
                scene.RemoveNode(display)
            scene.RemoveNode(segmentation_node)
        return SegmentLabels(array, {**seg_names, **(names or {})}, colors, mode)
    array = read_labels(path, mrml.volume_from_node(volume_node))
    return SegmentLabels(array, names or {}, mode=mode)


def render_file(
    volume_path: str | Path,
    out_dir: str | Path,
    settings: RenderSettings,
    orbit: Orbit,
    segmentation: str | Path | None = None,
    label_names: dict[int, str] | None = None,
    label_mode: str = "visible",
    progress: Callable[[float, str], None] | None = None,
) -> CaptureSet:
    """Headless ``vfmlab render``: load the volume into a fresh MRML scene, capture an orbit, write the folder."""
    from .. import mrml

    scene = mrml.new_scene()
    try:
        volume_node = mrml.load_volume_node(scene, volume_path, name=stem(Path(volume_path)))
        labels = (load_segment_labels(scene, volume_node, segmentation, label_names, label_mode)
                  if segmentation else None)
        records = orbit_records(mrml.volume_from_node(volume_node), orbit, settings.width, settings.height)
        return capture_views(scene, volume_node, records, out_dir, settings, labels=labels,
                             source_path=volume_path, progress=progress)
    finally:
        scene.Clear(1)
