"""The DeepDVR panel section (``Resources/UI/DeepDVR.ui``): Qt glue over :class:`dvr_logic.DeepDVRLogic`.

Mounted by the module widget's ``setup()``::

    from VFMVolumeLabLib.dvr_widget import DeepDVRSection
    self.deepDVRSection = DeepDVRSection(self.layout)

A training run keeps going when Slicer closes (it is its own process; the run folder records it),
so the section has nothing to clean up.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import qt
import slicer

UI_FILE = Path(__file__).resolve().parents[1] / "Resources" / "UI" / "DeepDVR.ui"
CURRENT_TF = "(volume's current rendering)"


class DeepDVRSection:
    """Captures, model and annealing range; Start/Stop/Resume with progress, plot and preview; results."""

    def __init__(self, parent_layout) -> None:
        import VFMVolumeLabLib

        VFMVolumeLabLib.ensure_vfmlab_importable()
        from VFMVolumeLabLib.dvr_logic import MODELS, DeepDVRLogic

        self.widget = slicer.util.loadUI(str(UI_FILE))
        parent_layout.addWidget(self.widget)
        self.ui = slicer.util.childWidgetVariables(self.widget)
        self.widget.setMRMLScene(slicer.mrmlScene)
        self.logic = DeepDVRLogic(slicer.mrmlScene)
        self.logic.on_progress = self.onProgress
        self.logic.on_done = self.onDone
        self.logic.on_update = self.onUpdate

        from vfmlab.render.presets import preset_names

        self.ui.capturePresetComboBox.addItems(preset_names() + [CURRENT_TF])
        self.ui.capturePresetComboBox.currentText = "CT-AAA"
        self.ui.modelComboBox.addItems(list(MODELS))
        self.ui.sizeComboBox.addItems(["small", "paper"])
        home = Path(tempfile.gettempdir()) / "DeepDVR"
        self.ui.capturesPathLineEdit.currentPath = str(home / "captures")
        self.ui.runPathLineEdit.currentPath = str(home / "run")

        self.ui.captureNowButton.connect("clicked(bool)", self.onCaptureNow)
        self.ui.startButton.connect("clicked(bool)", self.onStart)
        self.ui.stopButton.connect("clicked(bool)", self.onStop)
        self.ui.resumeButton.connect("clicked(bool)", self.onResume)
        self.ui.showPlotButton.connect("clicked(bool)", self.onShowPlot)
        self.ui.applyTFButton.connect("clicked(bool)", self.onApplyTF)
        self.ui.renderViewButton.connect("clicked(bool)", self.onRenderView)
        self.updateButtons()

    def updateButtons(self) -> None:
        running = self.logic.is_running
        self.ui.startButton.enabled = not running
        self.ui.resumeButton.enabled = not running
        self.ui.stopButton.enabled = running
        self.ui.captureNowButton.enabled = not running

    def onCaptureNow(self) -> None:
        volume_node = self.ui.dvrVolumeSelector.currentNode()
        if volume_node is None:
            slicer.util.errorDisplay("Select a volume to capture.")
            return
        preset = self.ui.capturePresetComboBox.currentText
        with slicer.util.tryWithErrorDisplay("Capture failed.", waitCursor=True):
            out = self.logic.capture_now(volume_node, self.ui.capturesPathLineEdit.currentPath,
                                         views=self.ui.captureViewsSpinBox.value,
                                         preset=None if preset == CURRENT_TF else preset,
                                         volume_rendering_logic=slicer.modules.volumerendering.logic())
            self.ui.trainingStatusLabel.text = f"Captured {self.ui.captureViewsSpinBox.value} views into {out}."

    def onStart(self) -> None:
        with slicer.util.tryWithErrorDisplay("Training did not start.", waitCursor=True):
            self.logic.start(self.ui.capturesPathLineEdit.currentPath, self.ui.runPathLineEdit.currentPath,
                             model=self.ui.modelComboBox.currentText, epochs=self.ui.epochsSpinBox.value,
                             s_low=self.ui.sLowSpinBox.value, s_high=self.ui.sHighSpinBox.value,
                             size=self.ui.sizeComboBox.currentText)
            self.ui.trainingProgressBar.value = 0
            self.ui.trainingStatusLabel.text = "Training started..."
        self.updateButtons()

    def onStop(self) -> None:
        self.logic.stop()
        self.ui.trainingStatusLabel.text = "Stopping..."

    def onResume(self) -> None:
        with slicer.util.tryWithErrorDisplay("Training did not resume.", waitCursor=True):
            self.logic.resume(self.ui.runPathLineEdit.currentPath)
            self.ui.trainingStatusLabel.text = "Resuming..."
        self.updateButtons()

    def onProgress(self, fraction: float, message: str) -> None:
        self.ui.trainingProgressBar.value = int(round(100 * fraction))
        self.ui.trainingStatusLabel.text = message

    def onUpdate(self) -> None:
        previews = sorted((Path(self.logic.run_dir) / "previews").glob("epoch_*.png"))
        if previews:
            pixmap = qt.QPixmap(str(previews[-1]))
            self.ui.previewLabel.setPixmap(pixmap.scaledToWidth(min(360, pixmap.width() * 2)))

    def onDone(self, state: str, outcome) -> None:
        if state == "finished":
            self.ui.trainingStatusLabel.text = (f"Finished epoch {outcome.get('epoch')}; best validation SSIM "
                                                f"{outcome.get('best_val_ssim', 0):.4f}.")
        elif state == "cancelled":
            self.ui.trainingStatusLabel.text = "Stopped. Resume continues from the last finished epoch."
        else:
            self.ui.trainingStatusLabel.text = f"Training failed: {outcome}"
        self.updateButtons()

    def onShowPlot(self) -> None:
        _, chart = self.logic.plot_nodes()
        slicer.modules.plots.logic().ShowChartInLayout(chart)

    def onApplyTF(self) -> None:
        volume_node = self.ui.dvrVolumeSelector.currentNode()
        if volume_node is None:
            slicer.util.errorDisplay("Select the volume to show with the learned transfer function.")
            return
        with slicer.util.tryWithErrorDisplay("Could not apply the learned transfer function.", waitCursor=True):
            self.logic.apply_learned_tf(volume_node, self.ui.runPathLineEdit.currentPath, method="gpu",
                                        volume_rendering_logic=slicer.modules.volumerendering.logic())

    def onRenderView(self) -> None:
        from vfmlab.render.poses import record_from_camera

        view = slicer.app.layoutManager().threeDWidget(0).threeDView()
        window = view.renderWindow()
        width, height = window.GetSize()
        camera = window.GetRenderers().GetFirstRenderer().GetActiveCamera()
        with slicer.util.tryWithErrorDisplay("Could not render the view with the trained model.", waitCursor=True):
            record = record_from_camera(camera, width, height, "view.png")
            self.viewProcess = self.logic.render_view(
                record, height, self.ui.runPathLineEdit.currentPath, self.ui.dvrVolumeSelector.currentNode(),
                on_node=self.showRenderedView,
                on_failed=lambda reason: slicer.util.errorDisplay(f"Could not render the view.\n\n{reason}"))

    def showRenderedView(self, node) -> None:
        """Only in the Red view, over whatever else it showed: the other views keep the user's layers."""
        from VFMVolumeLabLib.views import show_in_slice_view

        show_in_slice_view(slicer.app.layoutManager(), "Red", background=node)
