"""DeepDVR in Slicer, without Qt: capture views, train in the background, plot, preview, apply the TF.

:class:`DeepDVRLogic` adapts MRML nodes to :mod:`vfmlab.dvr`: a training run is a ``dvr-train`` job on
the model server (the captures sent as a folder), mirrored into the run folder chosen here; its epoch
metrics fill a ``vtkMRMLTableNode`` plotted by a ``vtkMRMLPlotChartNode`` (loss and validation SSIM
series), its preview images go into an RGB image node, and a lookup run's learned TF goes onto the
volume's volume rendering. The widget (``dvr_widget.py``) only forwards clicks and shows what this reports.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Optional

from vfmlab.errors import InputError
from vfmlab.models import names

from VFMVolumeLabLib.section_logic import SectionLogic

MODELS = names("dvr")
TRAINING = "training"
# Files of a run that the panel reads (plot, previews, learned TF); checkpoints stay on the server.
MIRRORED = ("metrics.jsonl", "previews/*", "*.json", "job.log")
TABLE_NAME = "DeepDVR metrics"
CHART_NAME = "DeepDVR training"
PREVIEW_NAME = "DeepDVR preview"
SERIES = (("train_loss", "loss (MSE + 1 - SSIM)", (0.85, 0.25, 0.2)),
          ("val_ssim", "validation SSIM", (0.2, 0.45, 0.85)))
COLUMNS = ("epoch", "train_loss", "val_ssim", "sampling_rate", "seconds")


class DeepDVRLogic(SectionLogic):
    """One training run at a time on ``scene``.

    ``on_progress(fraction, message)``, ``on_done(state, result_or_reason)`` and ``on_update()`` (plot
    or preview changed) are called from the job follower's timer.
    """

    def __init__(self, scene, timer_factory: Optional[Callable] = None):
        super().__init__(scene, timer_factory)
        self.run_dir: Optional[Path] = None
        self.on_progress: Optional[Callable[[float, str], None]] = None
        self.on_done: Optional[Callable[[str, Any], None]] = None
        self.on_update: Optional[Callable[[], None]] = None

    # -- captures --------------------------------------------------------------------------------
    def capture_now(self, volume_node, out_dir: str | Path, views: int = 20, size: int = 128,
                    preset: Optional[str] = "CT-AAA", shift: float = 0.0, elevation: float = 20.0,
                    volume_rendering_logic=None) -> Path:
        """Capture an orbit of ``volume_node`` with Slicer's volume rendering (no shading) into ``out_dir``.

        ``preset`` None captures with the volume's current volume rendering TF. The volume is saved
        beside the captures (``cameras.json`` records it and its SHA-256). Rendering is headless;
        ``volume_rendering_logic`` is the application's (a headless one when None).
        """
        from vfmlab import mrml
        from vfmlab.mrml import volume_rendering as vr
        from vfmlab.render.capture import RenderSettings, capture_views
        from vfmlab.render.poses import Orbit, orbit_records

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        volume_path = out_dir / f"{volume_node.GetName()}.nrrd"
        _save_copy(volume_node, volume_path)
        transfer_function = None
        if preset is None:
            display = _volume_rendering_display(volume_node)
            if display is None:
                raise InputError("the volume has no volume rendering yet: choose a preset")
            transfer_function = vr.transfer_function_record(display)
        settings = RenderSettings(preset=preset, shift=shift if preset else 0.0, width=size, height=size,
                                  shading=False, transfer_function=transfer_function)
        records = orbit_records(mrml.volume_from_node(volume_node), Orbit(views=views, elevation=elevation),
                                size, size)
        capture_views(self.scene, volume_node, records, out_dir, settings, logic=volume_rendering_logic,
                      source_path=volume_path)
        return out_dir

    # -- training --------------------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        return self.running(TRAINING)

    def start(self, client, captures_dir: str | Path, run_dir: str | Path, model: str = "lookup", epochs: int = 100,
              s_low: float = 0.1, s_high: Optional[float] = None, **settings) -> None:
        """Train ``model`` on the captures on ``client``'s server, mirrored into ``run_dir``;
        ``settings``: other :class:`TrainConfig` fields."""
        from vfmlab.client.jobs import ServerJob, folder_reference
        from vfmlab.dvr.config import TrainConfig
        from vfmlab.dvr.tasks import TRAIN_TASK

        if model not in MODELS:
            raise InputError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
        config = TrainConfig(captures=str(Path(captures_dir).resolve()), model=model, epochs=int(epochs),
                             s_low=float(s_low), s_high=None if s_high is None else float(s_high), **settings)
        self._refuse_second_run()
        # The captures folder holds the views, cameras.json and the captured volume: it travels whole.
        params = {"run_dir": "run:.", "config": {**asdict(config), "captures": folder_reference(client, captures_dir)}}
        self._follow(run_dir, lambda: ServerJob.start(client, TRAIN_TASK, params, self.run_dir, MIRRORED))

    def resume(self, client, run_dir: Optional[str | Path] = None) -> None:
        """Continue a stopped run (default: the last one) from its last checkpoint, on the server that trained it."""
        from vfmlab.client.jobs import ServerJob

        self._refuse_second_run()
        run_dir = Path(run_dir or self.run_dir)
        self._follow(run_dir, lambda: ServerJob.resume(client, run_dir, MIRRORED))

    def stop(self) -> None:
        """Cancel the running job (its last finished epoch's checkpoint stays; :meth:`resume` continues)."""
        self.cancel(TRAINING)

    def _refuse_second_run(self) -> None:
        if self.is_running:
            raise InputError(f"a DeepDVR run is already training into {self.run_dir}; stop it first")

    def _follow(self, run_dir, start) -> None:
        self.run_dir = Path(run_dir).resolve()
        self.follow(TRAINING, start, on_progress=self.on_progress, on_event=self._on_event, on_done=self.on_done)
        self.update_plot()

    def _on_event(self, event) -> None:
        if event.kind == "metric" and event.data.get("name") == "val_ssim":
            self.update_plot()
        elif event.kind == "artifact" and event.data.get("kind") == "preview":
            self.update_preview(event.data["path"])
        else:
            return
        if self.on_update is not None:
            self.on_update()

    # -- plot and preview ------------------------------------------------------------------------
    def plot_nodes(self):
        """``(table, chart)``: the metrics table and the chart with loss and validation SSIM series."""
        import slicer
        import vtk

        table = self.scene.GetFirstNodeByName(TABLE_NAME)
        if table is None:
            table = self.scene.AddNewNodeByClass("vtkMRMLTableNode", TABLE_NAME)
            for name in COLUMNS:
                column = vtk.vtkDoubleArray()
                column.SetName(name)
                table.AddColumn(column)
        chart = self.scene.GetFirstNodeByName(CHART_NAME)
        if chart is None:
            chart = self.scene.AddNewNodeByClass("vtkMRMLPlotChartNode", CHART_NAME)
            chart.SetTitle("DeepDVR training")
            chart.SetXAxisTitle("epoch")
            for column, label, color in SERIES:
                series = self.scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", label)
                series.SetAndObserveTableNodeID(table.GetID())
                series.SetXColumnName("epoch")
                series.SetYColumnName(column)
                series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
                series.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleCircle)
                series.SetColor(*color)
                chart.AddAndObservePlotSeriesNodeID(series.GetID())
        return table, chart

    def update_plot(self) -> int:
        """Refill the metrics table from the run's ``metrics.jsonl``; returns the number of epochs."""
        from vfmlab.dvr.checkpoints import dvr_run

        table, _ = self.plot_nodes()
        rows = dvr_run(self.run_dir).metrics() if self.run_dir is not None else []
        vtk_table = table.GetTable()
        vtk_table.SetNumberOfRows(len(rows))
        for index, row in enumerate(rows):
            for column, name in enumerate(COLUMNS):
                vtk_table.SetValue(index, column, float(row.get(name, float("nan"))))
        table.Modified()
        return len(rows)

    def update_preview(self, path: str | Path):
        """Show a preview PNG (prediction beside target) in the preview image node; returns the node."""
        from vfmlab.mrml.three_d_view import add_image_node
        from vfmlab.render.images import read_rgb

        old = self.scene.GetFirstNodeByName(PREVIEW_NAME)
        if old is not None:
            if old.GetDisplayNode() is not None:
                self.scene.RemoveNode(old.GetDisplayNode())
            self.scene.RemoveNode(old)
        node = add_image_node(self.scene, read_rgb(path), PREVIEW_NAME)
        node.SetName(PREVIEW_NAME)  # one preview node, found by name
        return node

    # -- results ---------------------------------------------------------------------------------
    def render_view(self, client, record, height: int, run_dir: Optional[str | Path] = None, volume_node=None,
                    name: str = "DeepDVR view", on_node: Optional[Callable[[Any], None]] = None,
                    on_failed: Optional[Callable[[str], None]] = None):
        """Render a camera record (e.g. the 3D view's, ``vfmlab.render.poses.record_from_camera``) with
        the trained model at ``height`` rows, as a ``dvr-view`` job on the server that trained the run (the
        model never runs in Slicer's process); ``on_node(node)`` gets the new RGB image node.
        Returns the started :class:`JobFollower`."""
        import tempfile

        from vfmlab import mrml
        from vfmlab.client.jobs import ServerJob, run_reference, volume_reference
        from vfmlab.dvr.tasks import VIEW_TASK

        run_dir = Path(run_dir or self.run_dir)
        params = {"run_dir": run_reference(client, run_dir), "record": asdict(record), "height": int(height),
                  "out": "run:view.png",
                  "volume": None if volume_node is None else volume_reference(client, mrml.volume_from_node(volume_node))}
        (run_dir / "views").mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="view-", dir=run_dir / "views"))

        def done(state: str, outcome) -> None:
            if state == "finished":
                node = self._image_node(outcome["image"], name)
                if on_node is not None:
                    on_node(node)
            elif on_failed is not None:
                on_failed(str(outcome))

        return self.follow(f"view {folder.name}", lambda: ServerJob.start(client, VIEW_TASK, params, folder, ("view.png",)),
                           on_done=done)

    def _image_node(self, path: str | Path, name: str):
        from vfmlab.mrml.three_d_view import add_image_node
        from vfmlab.render.images import read_rgb

        return add_image_node(self.scene, read_rgb(path), name)

    def apply_learned_tf(self, volume_node, run_dir: Optional[str | Path] = None, method: str = "cpu",
                         volume_rendering_logic=None):
        """Put a lookup run's learned TF (its best epoch's, written by the run as ``transfer_function.json``)
        on ``volume_node``'s volume rendering (through the application's volume rendering logic when given)."""
        import json

        from vfmlab.dvr.checkpoints import TF_JSON
        from vfmlab.dvr.piecewise_tf import PiecewiseTF
        from vfmlab.mrml.transfer_functions import apply_to_volume_rendering

        path = Path(run_dir or self.run_dir) / TF_JSON
        if not path.is_file():
            raise InputError(f"{path.parent} has no learned transfer function ({TF_JSON}): only lookup runs learn "
                             "one, and a run writes it when it ends (a stopped run too)")
        tf = PiecewiseTF.from_dict(json.loads(path.read_text(encoding="utf-8")))
        return apply_to_volume_rendering(volume_node, tf, method, logic=volume_rendering_logic)


def _volume_rendering_display(volume_node):
    for index in range(volume_node.GetNumberOfDisplayNodes()):
        display = volume_node.GetNthDisplayNode(index)
        if display is not None and display.IsA("vtkMRMLVolumeRenderingDisplayNode"):
            return display
    return None


def _save_copy(volume_node, path: Path) -> None:
    """Write the volume's voxels and geometry to ``path`` without attaching a storage node to it."""
    from vfmlab import mrml
    from vfmlab.volume_io import write_volume

    write_volume(mrml.volume_from_node(volume_node), path)
