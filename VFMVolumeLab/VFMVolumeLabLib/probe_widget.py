"""Qt glue of the Capture & Probe panel section (``Resources/UI/Probe.ui``); the work is in :mod:`probe_logic`.

Mount it from the module widget's ``setup()``::

    from VFMVolumeLabLib.probe_widget import ProbeSection
    self.probeSection = ProbeSection(self.layout)

and call ``self.probeSection.cleanup()`` from the widget's ``cleanup()``.
"""
from __future__ import annotations

import time
from pathlib import Path

import slicer

from VFMVolumeLabLib.probe_logic import CaptureRequest, ProbeLogic

UI_FILE = Path(__file__).resolve().parents[1] / "Resources" / "UI" / "Probe.ui"
CURRENT_PRESET = "(current)"


class ProbeSection:
    """Volume, segments, preset, views, models; Capture & Probe with progress and Cancel; maps shown beside 3D."""

    def __init__(self, parent_layout, scene=None):
        import qt

        import VFMVolumeLabLib

        VFMVolumeLabLib.ensure_vfmlab_importable()
        self.scene = scene or slicer.mrmlScene
        self.logic = ProbeLogic(self.scene, slicer.modules.volumerendering.logic())
        self.process = None
        self.runDir = None
        self.widget = slicer.util.loadUI(str(UI_FILE))
        parent_layout.addWidget(self.widget)
        self.ui = slicer.util.childWidgetVariables(self.widget)
        self.widget.setMRMLScene(self.scene)
        self.ui.probePresetComboBox.addItems([CURRENT_PRESET] + self.logic.presets())
        self.ui.probePresetComboBox.setCurrentText("CT-AAA")
        self.ui.probeOutputDirectoryButton.directory = str(Path(slicer.app.temporaryPath) / "VFMProbe")
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

    def cleanup(self) -> None:
        if self.process is not None and self.process.is_running:
            self.process.cancel()

    def onCurrentViewToggled(self, checked: bool) -> None:
        self.ui.probeViewsSpinBox.enabled = not checked
        self.ui.probeElevationSpinBox.enabled = not checked

    def request(self) -> CaptureRequest:
        preset = self.ui.probePresetComboBox.currentText
        shading = {0: None, 1: True, 2: False}[self.ui.probeShadingComboBox.currentIndex]
        return CaptureRequest(
            preset=None if preset == CURRENT_PRESET else preset, shift=float(self.ui.probeShiftSpinBox.value),
            views=int(self.ui.probeViewsSpinBox.value), elevation=float(self.ui.probeElevationSpinBox.value),
            shading=shading, current_view=bool(self.ui.probeCurrentViewCheckBox.checked),
            method="gpu",  # the app's 3D view renders on the graphics card
        )

    def appView(self):
        from vfmlab.mrml.volume_rendering import RenderWindowView

        threeDView = slicer.app.layoutManager().threeDWidget(0).threeDView()
        renderWindow = threeDView.renderWindow()
        return RenderWindowView(renderWindow, renderWindow.GetRenderers().GetFirstRenderer(), threeDView.mrmlViewNode())

    def onCaptureAndProbe(self) -> None:
        from VFMVolumeLabLib.BackgroundProcess import BackgroundProcess

        if self.process is not None and self.process.is_running:
            return
        models = [name for name, box in self.modelCheckBoxes.items() if box.enabled and box.checked]
        with slicer.util.tryWithErrorDisplay("Capture & Probe could not start.", waitCursor=True):
            self.runDir = Path(self.ui.probeOutputDirectoryButton.directory) / time.strftime("%Y%m%d-%H%M%S")
            job = self.logic.probe_job(self.runDir / "captures", self.runDir / "probes", models)
            self.setRunning(True)
            self.logic.capture(
                self.ui.probeVolumeSelector.currentNode(), self.runDir / "captures", self.request(),
                self.ui.probeSegmentationSelector.currentNode(), view=self.appView(), progress=self.onCaptureProgress,
            )
            self.process = BackgroundProcess(job.task, job.params, job.workdir, module=job.module,
                                             on_progress=self.onProgress, on_done=self.onDone)
            self.process.start()
            self.ui.probeStatusLabel.text = "Probing the captures..."
        if self.process is None or not self.process.is_running:
            self.setRunning(False)

    def onCaptureProgress(self, fraction: float, message: str) -> None:
        import qt

        self.ui.probeProgressBar.value = int(round(fraction * 200))  # capturing: the first fifth of the bar
        self.ui.probeStatusLabel.text = message
        slicer.app.processEvents(qt.QEventLoop.ExcludeUserInputEvents)

    def onProgress(self, fraction: float, message: str) -> None:
        self.ui.probeProgressBar.value = 200 + int(round(fraction * 800))
        self.ui.probeStatusLabel.text = message

    def onCancel(self) -> None:
        if self.process is not None:
            self.process.cancel()
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
