"""Qt glue of the BT-VAE panel section (``Resources/UI/BTVAE.ui``); the work is in :mod:`btvae_logic`.

Mount it from the module widget's ``setup()``::

    from SegmentationToolsLib.btvae_widget import BTVAESection
    self.btvaeSection = BTVAESection(self.layout)

and call ``self.btvaeSection.cleanup()`` from the widget's ``cleanup()``. Training and prediction run as
jobs on the model server.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import qt
import slicer
from slicer import vtkMRMLScalarVolumeNode
from slicer.parameterNodeWrapper import Choice, Default, parameterNodeWrapper

from vfmlab.btvae.config import SLICE_AXES
from vfmlab.btvae.registry import MODEL_NAMES

from SegmentationToolsLib.btvae_logic import BTVAELogic, TrainingSettings
from VFMVolumeLabLib.section_widget import Section

_DEFAULTS = TrainingSettings()


@parameterNodeWrapper
class BTVAEParameters:
    """The section's settings, saved with the scene; defaults are :class:`TrainingSettings`' (the CPU run's)."""

    btvaeVolume: vtkMRMLScalarVolumeNode
    btvaeRunDirectory: Annotated[Path, Default(Path(tempfile.gettempdir()) / "BTVAE" / "run")]
    btvaeModel: Annotated[str, Choice(list(MODEL_NAMES)), Default(_DEFAULTS.model)]
    btvaeRatio: Annotated[float, Default(_DEFAULTS.ratio)]
    btvaeAxis: Annotated[str, Choice(list(SLICE_AXES)), Default(_DEFAULTS.axis)]
    btvaeSize: Annotated[int, Default(_DEFAULTS.image_size)]
    btvaePretrainEpochs: Annotated[int, Default(_DEFAULTS.pretrain_epochs)]
    btvaePretrainLr: Annotated[float, Default(_DEFAULTS.pretrain_lr)]
    btvaeEpochs: Annotated[int, Default(_DEFAULTS.epochs)]
    btvaeFinetuneLr: Annotated[float, Default(_DEFAULTS.finetune_lr)]
    btvaeBatchSize: Annotated[int, Default(_DEFAULTS.batch_size)]
    btvaeSamples: Annotated[int, Default(_DEFAULTS.samples)]
    btvaeShowUncertainty: Annotated[bool, Default(True)]
    btvaeUncertaintyOpacity: Annotated[float, Default(0.5)]


class BTVAESection(Section):
    """Inputs, ratio, stage settings, Train / Resume / Cancel, progress, metrics table, Predict."""

    UI_FILE = Path(__file__).resolve().parents[1] / "Resources" / "UI" / "BTVAE.ui"
    PARAMETERS = BTVAEParameters
    PARAMETER_PREFIX = "BTVAE"

    def __init__(self, parent_layout, scene=None, link=None) -> None:
        super().__init__(parent_layout, scene, link)
        self.ui.btvaeMetricsTable.setHorizontalHeaderLabels(["Metric", "Value"])
        self.ui.btvaeMetricsTable.horizontalHeader().setStretchLastSection(True)
        self.ui.btvaeTrainButton.connect("clicked(bool)", lambda: self.onTrain(resume=False))
        self.ui.btvaeResumeButton.connect("clicked(bool)", lambda: self.onTrain(resume=True))
        self.ui.btvaeCancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.btvaePredictButton.connect("clicked(bool)", self.onPredict)
        self.ui.btvaeRunDirectoryButton.connect("directoryChanged(QString)",
                                                lambda _: self.parameters is not None and self.showMetrics())
        self.ui.btvaeUncertaintyOpacitySlider.connect("valueChanged(double)", self.onOpacityChanged)

    def createLogic(self):
        return BTVAELogic(self.scene)

    def setParameterNode(self, node) -> None:
        super().setParameterNode(node)
        if self.parameters is not None:
            self.showMetrics()

    def runDirectory(self) -> Path:
        return Path(self.parameters.btvaeRunDirectory)

    def settings(self) -> TrainingSettings:
        p = self.parameters
        return TrainingSettings(
            model=p.btvaeModel, ratio=p.btvaeRatio, axis=p.btvaeAxis, image_size=p.btvaeSize,
            pretrain_epochs=p.btvaePretrainEpochs, pretrain_lr=p.btvaePretrainLr, epochs=p.btvaeEpochs,
            finetune_lr=p.btvaeFinetuneLr, batch_size=p.btvaeBatchSize, samples=p.btvaeSamples,
        )

    def onTrain(self, resume: bool) -> None:
        from SegmentationToolsLib.btvae_logic import TRAINING

        if self.logic.running(TRAINING) or self.parameters is None:
            return
        callbacks = {"on_progress": self.onProgress, "on_done": self.onDone}
        volumeNode, runDir, settings = self.parameters.btvaeVolume, self.runDirectory(), self.settings()
        segmentationNode = self.ui.btvaeSegmentSelector.currentNode()
        segmentId = self.ui.btvaeSegmentSelector.currentSegmentID()

        def start(client) -> None:
            if resume:
                self.logic.resume_training(client, runDir, **callbacks)
            else:
                self.logic.start_training(client, volumeNode, segmentationNode, segmentId, runDir, settings,
                                          **callbacks)
            self.setRunning(True)
            self.ui.btvaeStatusLabel.text = "Resuming training..." if resume else "Training..."

        self.ui.btvaeStatusLabel.text = "Sending the volume and the segment to the model server..."
        self.withServer(start, "Starting the training")

    def onCancel(self) -> None:
        from SegmentationToolsLib.btvae_logic import PREDICTION, TRAINING

        if self.logic.running(TRAINING):
            self.ui.btvaeStatusLabel.text = "Cancelling... (Resume continues from the last checkpoint)"
        self.logic.cancel(TRAINING)
        self.logic.cancel(PREDICTION)

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
        from SegmentationToolsLib.btvae_logic import PREDICTION

        if self.logic.running(PREDICTION) or self.parameters is None:
            return
        volumeNode, runDir, samples = self.parameters.btvaeVolume, self.runDirectory(), self.parameters.btvaeSamples

        def start(client) -> None:
            self.logic.start_prediction(client, runDir, volumeNode, samples=samples, on_progress=self.onProgress,
                                        on_done=lambda state, outcome: self.onPredicted(state, outcome, runDir,
                                                                                         volumeNode))
            self.ui.btvaeStatusLabel.text = "Segmenting the volume..."

        self.withServer(start, "Starting the prediction")

    def onPredicted(self, state: str, outcome, runDir, volumeNode) -> None:
        if state != "finished":
            self.ui.btvaeStatusLabel.text = f"Prediction {state}."
            if state == "failed":
                slicer.util.errorDisplay(f"Prediction failed.\n\n{outcome}")
            return
        with slicer.util.tryWithErrorDisplay("Could not add the prediction.", waitCursor=True):
            nodes = self.logic.add_prediction(runDir, outcome, volumeNode, self.ui.btvaeSegmentSelector.currentNode())
            self.ui.btvaeSegmentSelector.setCurrentNode(nodes.segmentation_node)
            if nodes.uncertainty_node is not None and self.parameters.btvaeShowUncertainty:
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
                           foreground_opacity=self.parameters.btvaeUncertaintyOpacity, fit=False)

    def onOpacityChanged(self, value: float) -> None:
        from VFMVolumeLabLib.views import show_in_slice_view

        view = getattr(self, "uncertaintyView", None)
        if view is not None:
            show_in_slice_view(slicer.app.layoutManager(), view, foreground_opacity=float(value), fit=False)
