"""Qt glue of the Capture & Probe panel section (``Resources/UI/Probe.ui``); the work is in :mod:`probe_logic`.

Mount it from the module widget's ``setup()``::

    from VFMVolumeLabLib.probe_widget import ProbeSection
    self.probeSection = ProbeSection(self.layout)

and call ``self.probeSection.cleanup()`` from the widget's ``cleanup()``. Captures are rendered here by
Slicer's volume rendering; probing runs as a job on the model server.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Annotated, Optional

import slicer
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import Choice, Default, parameterNodeWrapper

from vfmlab.render.presets import preset_names

from VFMVolumeLabLib.probe_logic import TASK, CaptureRequest, ProbeLogic
from VFMVolumeLabLib.section_widget import Section

CURRENT_PRESET = "(current)"
SHADING = {"As the preset": None, "On": True, "Off": False}
_REQUEST = CaptureRequest()


@parameterNodeWrapper
class ProbeParameters:
    """The section's settings, saved with the scene; defaults are :class:`CaptureRequest`'s."""

    probeVolume: vtkMRMLScalarVolumeNode
    probeSegmentation: Optional[vtkMRMLSegmentationNode]
    probePreset: Annotated[str, Choice([CURRENT_PRESET] + preset_names()), Default(_REQUEST.preset)]
    probeShift: Annotated[float, Default(_REQUEST.shift)]
    probeShading: Annotated[str, Choice(list(SHADING)), Default("As the preset")]
    probeViews: Annotated[int, Default(_REQUEST.views)]
    probeElevation: Annotated[float, Default(_REQUEST.elevation)]
    probeCurrentView: Annotated[bool, Default(_REQUEST.current_view)]
    probeOutputDirectory: Annotated[Path, Default(Path(tempfile.gettempdir()) / "VFMProbe")]


class ProbeSection(Section):
    """Volume, segments, preset, views, models; Capture & Probe with progress and Cancel; maps shown beside 3D."""

    UI_FILE = Path(__file__).resolve().parents[1] / "Resources" / "UI" / "Probe.ui"
    PARAMETERS = ProbeParameters
    PARAMETER_PREFIX = "Probe"

    def __init__(self, parent_layout, scene=None, link=None) -> None:
        import qt

        super().__init__(parent_layout, scene, link)
        self.runDir = None
        self.modelCheckBoxes = {}
        for name, description, available, detail in self.logic.models():
            box = qt.QCheckBox(f"{name}: {description}")
            box.enabled = available
            box.checked = available
            box.toolTip = detail
            self.ui.probeModelsGroupBox.layout().addWidget(box)
            self.modelCheckBoxes[name] = box
        self.ui.probeCaptureButton.connect("clicked(bool)", self.onCaptureAndProbe)
        self.ui.probeCancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.probeCurrentViewCheckBox.connect("toggled(bool)", self.onCurrentViewToggled)

    def createLogic(self):
        return ProbeLogic(self.scene, slicer.modules.volumerendering.logic())

    def onCurrentViewToggled(self, checked: bool) -> None:
        self.ui.probeViewsSpinBox.enabled = not checked
        self.ui.probeElevationSpinBox.enabled = not checked

    def request(self) -> CaptureRequest:
        settings = self.parameters
        return CaptureRequest(
            preset=None if settings.probePreset == CURRENT_PRESET else settings.probePreset, shift=settings.probeShift,
            views=settings.probeViews, elevation=settings.probeElevation, shading=SHADING[settings.probeShading],
            current_view=settings.probeCurrentView,
            method="gpu",  # the app's 3D view renders on the graphics card
        )

    def appView(self):
        from vfmlab.mrml.volume_rendering import RenderWindowView

        threeDView = slicer.app.layoutManager().threeDWidget(0).threeDView()
        renderWindow = threeDView.renderWindow()
        return RenderWindowView(renderWindow, renderWindow.GetRenderers().GetFirstRenderer(), threeDView.mrmlViewNode())

    def onCaptureAndProbe(self) -> None:
        """Capture here (Slicer renders), then probe the captures on the model server."""
        if self.logic.is_running or self.parameters is None:
            return
        models = [name for name, box in self.modelCheckBoxes.items() if box.enabled and box.checked]
        settings = self.parameters
        with slicer.util.tryWithErrorDisplay("Capture & Probe could not start.", waitCursor=True):
            if not models:
                raise ValueError("tick at least one model to probe with")
            runDir = Path(settings.probeOutputDirectory) / time.strftime("%Y%m%d-%H%M%S")
            self.setRunning(True)
            try:
                self.logic.capture(settings.probeVolume, runDir / "captures", self.request(), settings.probeSegmentation,
                                   view=self.appView(), progress=self.onCaptureProgress)
            except Exception:
                self.setRunning(False)
                raise
            self.runDir = runDir
            self.ui.probeStatusLabel.text = "Sending the captures to the model server..."
            self.withServer(lambda client: self.probeWith(client, models), "Probing")

    def probeWith(self, client, models: list[str]) -> None:
        """Probe the captures with ``models`` (the ones ticked when Capture & Probe was pressed)."""
        try:
            self.logic.start_probe(client, self.runDir / "captures", self.runDir / "probes", models,
                                   on_progress=self.onProgress, on_done=self.onDone)
        except Exception:
            self.setRunning(False)
            raise
        self.ui.probeStatusLabel.text = "Probing the captures..."

    def onServerFailed(self, message: str, what: str) -> None:
        self.setRunning(False)
        super().onServerFailed(message, what)

    def onCaptureProgress(self, fraction: float, message: str) -> None:
        import qt

        self.ui.probeProgressBar.value = int(round(fraction * 200))  # capturing: the first fifth of the bar
        self.ui.probeStatusLabel.text = message
        slicer.app.processEvents(qt.QEventLoop.ExcludeUserInputEvents)

    def onProgress(self, fraction: float, message: str) -> None:
        self.ui.probeProgressBar.value = 200 + int(round(fraction * 800))
        self.ui.probeStatusLabel.text = message

    def onCancel(self) -> None:
        if self.logic.is_running:
            self.logic.cancel(TASK)
            self.ui.probeStatusLabel.text = "Cancelling..."

    def onDone(self, state: str, outcome) -> None:
        self.setRunning(False)
        if state == "finished":
            skipped = outcome.get("skipped") or {}
            with slicer.util.tryWithErrorDisplay("Could not load the probe results.", waitCursor=True):
                results = self.logic.load_results(self.runDir / "probes")
                self.showResults(results)
            note = f" Skipped (no weights): {', '.join(skipped)}." if skipped else ""
            self.ui.probeStatusLabel.text = f"Done: {self.runDir / 'probes' / 'index.html'}.{note}"
        elif state == "cancelled":
            self.ui.probeStatusLabel.text = "Cancelled; the captures are kept in " + str(self.runDir / "captures")
        else:
            self.ui.probeStatusLabel.text = "Probing failed."
            slicer.util.errorDisplay(f"Probing failed.\n\n{outcome}")

    def showResults(self, results) -> None:
        """Four-up layout: the first model's grid in the Red view alone, beside the 3D view (the other views
        and every label layer stay as the user left them)."""
        from VFMVolumeLabLib.views import show_in_slice_view

        if not results:
            return
        layout_manager = slicer.app.layoutManager()
        layout_manager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpView)
        show_in_slice_view(layout_manager, "Red", background=results[0].grid_node)

    def setRunning(self, running: bool) -> None:
        self.ui.probeCaptureButton.enabled = not running
        self.ui.probeCancelButton.enabled = running
        if running:
            self.ui.probeProgressBar.value = 0
