"""DeepDVR in Slicer, without Qt: capture views, train in the background, plot, preview, apply the TF.

:class:`DeepDVRLogic` adapts MRML nodes to :mod:`vfmlab.dvr`: a training run is a
:class:`BackgroundProcess` running the ``dvr-train`` job in the run folder; its epoch metrics fill a
``vtkMRMLTableNode`` plotted by a ``vtkMRMLPlotChartNode`` (loss and validation SSIM series), its
preview images go into an RGB image node, and a lookup run's learned TF goes onto the volume's
volume rendering. The widget (``dvr_widget.py``) only forwards clicks and shows what this reports.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Optional

from vfmlab.errors import InputError, JobError
from vfmlab.models import names

MODELS = names("dvr")
TABLE_NAME = "DeepDVR metrics"
CHART_NAME = "DeepDVR training"
PREVIEW_NAME = "DeepDVR preview"
SERIES = (("train_loss", "loss (MSE + 1 - SSIM)", (0.85, 0.25, 0.2)),
          ("val_ssim", "validation SSIM", (0.2, 0.45, 0.85)))
COLUMNS = ("epoch", "train_loss", "val_ssim", "sampling_rate", "seconds")


class DeepDVRLogic:
    """One training run at a time on ``scene``.

    ``on_progress(fraction, message)``, ``on_done(state, result_or_reason)`` and ``on_update()`` (plot
    or preview changed) are called from the background process's timer.
    """

    def __init__(self, scene, timer_factory: Optional[Callable] = None, python: Optional[str] = None):
        self.scene = scene
        self.timer_factory = timer_factory
        self.python = python
        self.process = None
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
        return self.process is not None and self.process.is_running

    def start(self, captures_dir: str | Path, run_dir: str | Path, model: str = "lookup", epochs: int = 100,
              s_low: float = 0.1, s_high: Optional[float] = None, **settings) -> None:
        """Train ``model`` on the captures in the background; ``settings``: other :class:`TrainConfig` fields."""
        from vfmlab.dvr.config import TrainConfig

        if model not in MODELS:
            raise InputError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
        config = TrainConfig(captures=str(Path(captures_dir).resolve()), model=model, epochs=int(epochs),
                             s_low=float(s_low), s_high=None if s_high is None else float(s_high), **settings)
        self._launch(run_dir, asdict(config), resume=False)

    def resume(self, run_dir: Optional[str | Path] = None) -> None:
        """Continue a stopped run (default: the last one) from its last checkpoint."""
        from vfmlab.dvr.checkpoints import dvr_run

        run_dir = Path(run_dir or self.run_dir)
        dvr_run(run_dir).read_config()
        self._launch(run_dir, None, resume=True)

    def stop(self) -> None:
        """Cancel the running job (its last finished epoch's checkpoint stays; :meth:`resume` continues)."""
        if self.process is not None:
            self.process.cancel()

    def _launch(self, run_dir, config: Optional[dict], resume: bool) -> None:
        from vfmlab.dvr.checkpoints import dvr_run

        from VFMVolumeLabLib.BackgroundProcess import BackgroundProcess

        if self.is_running:
            raise JobError(f"a DeepDVR run is already training in {self.run_dir}")
        self.run_dir = Path(run_dir).resolve()
        dvr_run(self.run_dir).clear_stop()
        kwargs = {} if self.timer_factory is None else {"timer_factory": self.timer_factory}
        self.process = BackgroundProcess(
            "dvr-train", {"run_dir": str(self.run_dir), "config": config}, self.run_dir,
            module="vfmlab.dvr.tasks", resume=resume, python=self.python,
            on_progress=self.on_progress, on_event=self._on_event, on_done=self.on_done, **kwargs)
        self.update_plot()
        self.process.start()

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
    def render_view(self, record, height: int, run_dir: Optional[str | Path] = None, volume_node=None,
                    name: str = "DeepDVR view", on_node: Optional[Callable[[Any], None]] = None,
                    on_failed: Optional[Callable[[str], None]] = None):
        """Render a camera record (e.g. the 3D view's, ``vfmlab.render.poses.record_from_camera``) with
        the trained model at ``height`` rows, in a background process (the model never runs in Slicer's);
        ``on_node(node)`` gets the new RGB image node. Returns the started :class:`BackgroundProcess`."""
        import tempfile

        from vfmlab.dvr.tasks import TASK_MODULE, VIEW_TASK

        from VFMVolumeLabLib.BackgroundProcess import BackgroundProcess

        run_dir = Path(run_dir or self.run_dir)
        folder = Path(tempfile.mkdtemp(prefix="view-", dir=run_dir))
        volume = None
        if volume_node is not None:
            volume = folder / "volume.nrrd"
            _save_copy(volume_node, volume)
        params = {"run_dir": str(run_dir), "record": asdict(record), "height": int(height),
                  "out": str(folder / "view.png"), "volume": None if volume is None else str(volume)}

        def done(state: str, outcome) -> None:
            if state == "finished":
                node = self._image_node(outcome["image"], name)
                if on_node is not None:
                    on_node(node)
            elif on_failed is not None:
                on_failed(str(outcome))

        kwargs = {} if self.timer_factory is None else {"timer_factory": self.timer_factory}
        process = BackgroundProcess(VIEW_TASK, params, folder / "job", module=TASK_MODULE, python=self.python,
                                    on_done=done, **kwargs)
        process.start()
        return process

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
