"""Capture & Probe section of VFM Volume Lab, without Qt: MRML nodes ⇄ :mod:`vfmlab.render` / :mod:`vfmlab.probes`.

Capturing renders in this process (inside Slicer through the app's 3D view, headless in tests) and
writes ``view_NNN.png``, ``labels_NNN.png`` and ``cameras.json``; probing runs as the ``probe`` job
(``vfmlab.probes.tasks``) on the model server, the capture folder sent to it, its results mirrored back;
its maps come into the scene as image and volume nodes. Model code never runs in Slicer's process.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from vfmlab.render.poses import Orbit
from vfmlab.render.settings import RenderSettings

from VFMVolumeLabLib.section_logic import SectionLogic

TASK = "probe"


@dataclass
class CaptureRequest:
    """What the panel asks for."""

    preset: Optional[str] = RenderSettings.preset  # None: keep the volume's current volume rendering property
    shift: float = RenderSettings.shift
    views: int = Orbit.views
    elevation: float = Orbit.elevation
    size: int = RenderSettings.width  # headless captures; the app's 3D view captures at the view's own size
    method: str = RenderSettings.method
    shading: Optional[bool] = RenderSettings.shading
    current_view: bool = False  # one capture of the view as the user left it, instead of an orbit


@dataclass
class ProbeResultNodes:
    """Nodes added for one model: its grid picture and the first capture's per-head maps (one slice per head)."""

    model: str
    grid_node: Any
    heads_node: Any
    extra: dict = field(default_factory=dict)


class ProbeLogic(SectionLogic):
    def __init__(self, scene, volume_rendering_logic=None, timer_factory: Optional[Callable] = None):
        """``volume_rendering_logic``: the app's (``slicer.modules.volumerendering.logic()``), else a headless one."""
        super().__init__(scene, timer_factory)
        self.volume_rendering_logic = volume_rendering_logic

    @property
    def is_running(self) -> bool:
        return self.running(TASK)

    @staticmethod
    def presets() -> list[str]:
        from vfmlab.render.presets import preset_names

        return preset_names()

    @staticmethod
    def models() -> list[tuple[str, str, bool, str]]:
        """``(name, description, weights available, where or why not)`` of every probe."""
        from vfmlab.models.listing import model_rows

        return [(row["name"], row["description"], row["status"] != "missing", row.get("path") or row.get("message", ""))
                for row in model_rows("probe")]

    def capture(self, volume_node, out_dir: str | Path, request: CaptureRequest, segmentation_node=None,
                view=None, progress: Optional[Callable[[float, str], None]] = None):
        """Render ``volume_node`` into ``out_dir``; returns the saved :class:`vfmlab.cameras.CaptureSet`.

        ``view``: a :class:`vfmlab.mrml.volume_rendering.RenderWindowView` over the app's 3D view (captures
        at its size), or None for a headless view of ``request.size``. With ``segmentation_node`` the
        segments' IDs are rendered too (values 1..N in segment order, names and colours recorded).
        """
        from vfmlab.errors import InputError
        from vfmlab.mrml import labels_from_segmentation, volume_from_node
        from vfmlab.render.capture import RenderSettings, SegmentLabels, capture_views
        from vfmlab.render.poses import Orbit, orbit_records

        if volume_node is None:
            raise InputError("select a volume to capture")
        width, height = view.size if view is not None else (request.size, request.size)
        settings = RenderSettings(preset=request.preset, shift=request.shift, method=request.method,
                                  width=width, height=height, shading=request.shading)
        if request.current_view:
            if view is None:
                raise InputError("capturing the current view needs the application's 3D view")
            records = [view.current_record()]
        else:
            records = orbit_records(volume_from_node(volume_node), Orbit(request.views, request.elevation),
                                    width, height)
        labels = None
        if segmentation_node is not None:
            array, names = labels_from_segmentation(segmentation_node, volume_node)
            segmentation = segmentation_node.GetSegmentation()
            colors = {n + 1: tuple(segmentation.GetNthSegment(n).GetColor())
                      for n in range(segmentation.GetNumberOfSegments())}
            labels = SegmentLabels(array, names, colors)
        return capture_views(self.scene, volume_node, records, out_dir, settings,
                             logic=self.volume_rendering_logic, view=view, labels=labels,
                             source_path=self._source_file(volume_node), progress=progress)

    @staticmethod
    def _source_file(volume_node) -> Optional[Path]:
        """The file the volume was read from, when its voxels are still that file's."""
        storage = volume_node.GetStorageNode()
        if storage is None or not storage.GetFileName() or volume_node.GetModifiedSinceRead():
            return None
        path = Path(storage.GetFileName())
        return path if path.is_file() else None

    def start_probe(self, client, capture_dir: str | Path, out_dir: str | Path, models: list[str],
                    threads: Optional[int] = None, **callbacks):
        """Probe ``capture_dir`` with ``models`` on ``client``'s server; results mirrored into ``out_dir``.
        ``callbacks``: ``on_progress``, ``on_done`` of :class:`JobFollower` (returned)."""
        from vfmlab.client.jobs import ServerJob, folder_reference
        from vfmlab.errors import InputError
        from vfmlab.models.catalogue import get

        if not models:
            raise InputError("tick at least one model to probe with")
        for model in models:
            get(model, "probe")  # an unknown name is refused here, before anything is sent
        params = {"source": folder_reference(client, capture_dir), "out": "run:.", "models": list(models)}
        if threads:
            params["threads"] = int(threads)
        return self.follow(TASK, lambda: ServerJob.start(client, TASK, params, out_dir), **callbacks)

    def load_results(self, out_dir: str | Path) -> list[ProbeResultNodes]:
        """Per model that ran: its grid picture as an RGB image node and the first capture's per-head maps
        (at capture resolution, one slice per head) as a scalar volume node."""
        import json

        import numpy as np

        from vfmlab.errors import InputError
        from vfmlab.mrml import add_volume_node
        from vfmlab.mrml.volume_rendering import add_image_node
        from vfmlab.probes.maps import upsample
        from vfmlab.render.images import read_rgb
        from vfmlab.volume import LPS_TO_RAS, Volume

        out_dir = Path(out_dir)
        summary_path = out_dir / "summary.json"
        if not summary_path.is_file():
            raise InputError("holds no probe results (summary.json); run Capture & Probe first", out_dir)
        summary = json.loads(summary_path.read_text())
        first = summary["captures"][0]
        results = []
        for model, result in summary["models"].items():
            grid = add_image_node(self.scene, read_rgb(out_dir / result["grid"]), f"{model} attention grid")
            heads = np.load(out_dir / model / f"{first}_attention.npy")
            maps = upsample(heads, tuple(result["attention"]["image_size"])).astype(np.float32)
            volume = Volume(maps, direction=LPS_TO_RAS, name=f"{model} attention heads ({first})")
            results.append(ProbeResultNodes(model, grid, add_volume_node(self.scene, volume)))
        return results
