"""Qt glue of the BT-VAE panel section (``Resources/UI/BTVAE.ui``); the work is in :mod:`btvae_logic`.

Mount it from the module widget's ``setup()``::

    from SegmentationToolsLib.btvae_widget import BTVAESection
    self.btvaeSection = BTVAESection(self.layout)

and call ``self.btvaeSection.cleanup()`` from the widget's ``cleanup()``.
"""
from __future__ import annotations

from pathlib import Path

import qt
import slicer

from SegmentationToolsLib.btvae_logic import BTVAELogic, TrainingSettings

UI_FILE = Path(__file__).resolve().parents[1] / "Resources" / "UI" / "BTVAE.ui"


class BTVAESection:
    """Inputs, ratio, stage settings, Train / Resume / Cancel, progress, metrics table, Predict."""

    def __init__(self, parent_layout, scene=None):
        import VFMVolumeLabLib

        VFMVolumeLabLib.ensure_vfmlab_importable()
        self.scene = scene or slicer.mrmlScene
        self.logic = BTVAELogic(self.scene)
        self.process = None
        self.predictProcess = None
        self.widget = slicer.util.loadUI(str(UI_FILE))
        parent_layout.addWidget(self.widget)
        self.ui = slicer.util.childWidgetVariables(self.widget)
        self.widget.setMRMLScene(self.scene)
        self.ui.btvaeRunDirectoryButton.directory = str(Path(slicer.app.temporaryPath) / "BTVAE" / "run")
        self.ui.btvaeMetricsTable.setHorizontalHeaderLabels(["Metric", "Value"])
        self.ui.btvaeMetricsTable.horizontalHeader().setStretchLastSection(True)
        self.ui.btvaeTrainButton.connect("clicked(bool)", lambda: self.onTrain(resume=False))
        self.ui.btvaeResumeButton.connect("clicked(bool)", lambda: self.onTrain(resume=True))
        self.ui.btvaeCancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.btvaePredictButton.connect("clicked(bool)", self.onPredict)
        self.ui.btvaeRunDirectoryButton.connect("directoryChanged(QString)", lambda _: self.showMetrics())
        self.ui.btvaeUncertaintyOpacitySlider.connect("valueChanged(double)", self.onOpacityChanged)
        self.showMetrics()

    def cleanup(self) -> None:
        for process in (self.process, self.predictProcess):
            if process is not None and process.is_running:
                process.cancel()

    def runDirectory(self) -> Path:
        return Path(self.ui.btvaeRunDirectoryButton.directory)

    def settings(self) -> TrainingSettings:
        return TrainingSettings(
            model=self.ui.btvaeModelComboBox.currentText,
            ratio=float(self.ui.btvaeRatioSpinBox.value),
            axis=self.ui.btvaeAxisComboBox.currentText,
            image_size=int(self.ui.btvaeSizeSpinBox.value),
            pretrain_epochs=int(self.ui.btvaePretrainEpochsSpinBox.value),
            pretrain_lr=float(self.ui.btvaePretrainLrSpinBox.value),
            epochs=int(self.ui.btvaeEpochsSpinBox.value),
            finetune_lr=float(self.ui.btvaeFinetuneLrSpinBox.value),
            batch_size=int(self.ui.btvaeBatchSizeSpinBox.value),
            samples=int(self.ui.btvaeSamplesSpinBox.value),
        )

    def onTrain(self, resume: bool) -> None:
        from VFMVolumeLabLib.BackgroundProcess import BackgroundProcess

        if self.process is not None and self.process.is_running:
            return
        with slicer.util.tryWithErrorDisplay("Could not start training.", waitCursor=True):
            job = self.logic.training_job(
                self.ui.btvaeVolumeSelector.currentNode(),
                self.ui.btvaeSegmentSelector.currentNode(),
                self.ui.btvaeSegmentSelector.currentSegmentID(),
                self.runDirectory(),
                self.settings(),
            )
            self.process = BackgroundProcess(
                job.task, job.params, job.workdir, module=job.module, resume=resume,
                on_progress=self.onProgress, on_done=self.onDone,
            )
            self.process.start()
            self.setRunning(True)
            self.ui.btvaeStatusLabel.text = "Resuming training..." if resume else "Training..."

    def onCancel(self) -> None:
        if self.process is not None:
            self.process.cancel()
            self.ui.btvaeStatusLabel.text = "Cancelling... (Resume continues from the last checkpoint)"

    def onProgress(self, fraction: float, message: str) -> None:
        self.ui.btvaeProgressBar.value = int(round(fraction * 1000))
        self.ui.btvaeStatusLabel.text = message

    def onDone(self, state: str, outcome) -> None:
        self.setRunning(False)
        if state == "finished":
            self.ui.btvaeStatusLabel.text = "Training finished."
            self.showMetrics()
        elif state == "cancelled":
            self.ui.btvaeStatusLabel.text = "Training cancelled; Resume continues from the last checkpoint."
        else:
            self.ui.btvaeStatusLabel.text = "Training failed."
            slicer.util.errorDisplay(f"BT-VAE training failed.\n\n{outcome}")

    def setRunning(self, running: bool) -> None:
        self.ui.btvaeTrainButton.enabled = not running
        self.ui.btvaeResumeButton.enabled = not running
        self.ui.btvaePredictButton.enabled = not running
        self.ui.btvaeCancelButton.enabled = running

    def showMetrics(self) -> None:
        metrics = self.logic.read_metrics(self.runDirectory())
        rows = self.logic.metrics_rows(metrics) if metrics else []
        table = self.ui.btvaeMetricsTable
        table.setRowCount(len(rows))
        for row, (label, value) in enumerate(rows):
            table.setItem(row, 0, qt.QTableWidgetItem(label))
            table.setItem(row, 1, qt.QTableWidgetItem(value))

    def onPredict(self) -> None:
        from VFMVolumeLabLib.BackgroundProcess import BackgroundProcess

        if self.predictProcess is not None and self.predictProcess.is_running:
            return
        volumeNode = self.ui.btvaeVolumeSelector.currentNode()
        runDir = self.runDirectory()
        with slicer.util.tryWithErrorDisplay("Could not start the prediction.", waitCursor=True):
            job = self.logic.prediction_job(runDir, volumeNode, samples=int(self.ui.btvaeSamplesSpinBox.value))
            self.predictProcess = BackgroundProcess(
                job.task, job.params, job.workdir, module=job.module, on_progress=self.onProgress,
                on_done=lambda state, outcome: self.onPredicted(state, outcome, runDir, volumeNode))
            self.predictProcess.start()
            self.ui.btvaeStatusLabel.text = "Segmenting the volume..."

    def onPredicted(self, state: str, outcome, runDir, volumeNode) -> None:
        if state != "finished":
            self.ui.btvaeStatusLabel.text = f"Prediction {state}."
            if state == "failed":
                slicer.util.errorDisplay(f"Prediction failed.\n\n{outcome}")
            return
        with slicer.util.tryWithErrorDisplay("Could not add the prediction.", waitCursor=True):
            nodes = self.logic.add_prediction(runDir, outcome, volumeNode, self.ui.btvaeSegmentSelector.currentNode())
            self.ui.btvaeSegmentSelector.setCurrentNode(nodes.segmentation_node)
            if nodes.uncertainty_node is not None and self.ui.btvaeShowUncertaintyCheckBox.checked:
                self.showUncertainty(volumeNode, nodes.uncertainty_node)
            self.ui.btvaeStatusLabel.text = (
                "Prediction added as a new segment"
                + (" with its uncertainty volume." if nodes.uncertainty_node is not None else " (deterministic model: no uncertainty).")
            )

    def showUncertainty(self, volumeNode, uncertaintyNode) -> None:
        """Over the volume in the view the user works in (the first one showing it), not in every view."""
        from VFMVolumeLabLib.views import show_in_slice_view, working_view

        layout_manager = slicer.app.layoutManager()
        self.uncertaintyView = working_view(layout_manager, volumeNode)
        show_in_slice_view(layout_manager, self.uncertaintyView, background=volumeNode, foreground=uncertaintyNode,
                           foreground_opacity=float(self.ui.btvaeUncertaintyOpacitySlider.value), fit=False)

    def onOpacityChanged(self, value: float) -> None:
        from VFMVolumeLabLib.views import show_in_slice_view

        view = getattr(self, "uncertaintyView", None)
        if view is not None:
            show_in_slice_view(slicer.app.layoutManager(), view, foreground_opacity=float(value), fit=False)
