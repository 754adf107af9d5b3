"""Qt glue of the prompted-segmentation section (``Resources/UI/PromptSegment.ui``); the work is in
:mod:`segment_logic`, the model in the model server (:mod:`VFMVolumeLabLib.server_link`).

No model code and no worker thread run in Slicer: a prompt is one short request to the server, and a
propagation or encode-ahead is an operation on the server that a timer polls. The scene is only changed
here, on the main thread. Fine-tuning (:mod:`finetune_widget`) runs as a job on the server. Mount from
the module widget's ``setup()``::

    from SegmentationToolsLib.segment_widget import PromptSegmentSection
    self.promptSection = PromptSegmentSection(self.layout)

and call ``self.promptSection.cleanup()`` from the widget's ``cleanup()``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import qt
import slicer
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import Choice, Default, parameterNodeWrapper

from vfmlab.client import ServerError
from vfmlab.segment.config import SegmentConfig, SegmenterFinetuneConfig

from VFMVolumeLabLib.section_widget import Section

MODES = {"new segment": "new", "replace selected": "replace", "add to selected": "add",
         "subtract from selected": "subtract"}  # segModeComboBox's items -> SegmentSession.write's modes
PROMPT_NODES = (("vtkMRMLMarkupsFiducialNode", "SAM inside", (0.1, 0.8, 0.2)),
                ("vtkMRMLMarkupsFiducialNode", "SAM outside", (0.9, 0.1, 0.1)),
                ("vtkMRMLMarkupsROINode", "SAM box", (1.0, 0.8, 0.1)))


@dataclass
class FollowedOperation:
    """An operation running on the server that the poll timer follows."""

    id: str
    kind: str  # "propagation" or "encoding"
    view: str = ""  # the slice view the user prompted in
    seeded: bool = False  # started from the kept seeds, which are spent once its segment is written


@parameterNodeWrapper
class PromptSegmentParameters:
    """The section's settings, saved with the scene (the model list is the server's, so it is not stored)."""

    segVolume: vtkMRMLScalarVolumeNode
    segSegmentation: Optional[vtkMRMLSegmentationNode]
    segView: Annotated[str, Choice(["Red", "Yellow", "Green"]), Default("Red")]
    segName: Annotated[str, Default("segment")]
    segMode: Annotated[str, Choice(list(MODES)), Default("new segment")]
    segRange: Annotated[int, Default(0)]  # slices each way to propagate; 0: until the organ ends
    segFinetuneEpochs: Annotated[int, Default(SegmenterFinetuneConfig.epochs)]
    segFinetuneDecoder: Annotated[bool, Default(True)]
    segFinetuneName: Annotated[str, Default("my_hq_litemedsam")]


class PromptSegmentSection(Section):
    UI_FILE = Path(__file__).resolve().parents[1] / "Resources" / "UI" / "PromptSegment.ui"
    PARAMETERS = PromptSegmentParameters
    PARAMETER_PREFIX = "PromptSegment"

    def __init__(self, parent_layout, scene=None, link=None):
        from SegmentationToolsLib.finetune_widget import FinetunePart
        from SegmentationToolsLib.seeds_widget import SeedsPart

        super().__init__(parent_layout, scene, link)
        self.waiter.on_waiting = lambda: setattr(self.ui.segStatusLabel, "text", "Starting the model server...")
        self.session = self.session_key = self.operation = None
        self.models_listed_by = None  # the URL of the server whose models the combo shows
        self.finetune = FinetunePart(self)
        self.seedsPart = SeedsPart(self)
        self.pollTimer = qt.QTimer()
        self.pollTimer.setInterval(150)
        self.pollTimer.connect("timeout()", self.onPollTick)
        self.ui.segMetricsTable.setColumnCount(2)
        self.ui.segMetricsTable.setHorizontalHeaderLabels(["Metric", "Value"])
        self.ui.segMetricsTable.horizontalHeader().setStretchLastSection(True)
        self.ui.segServerUrlLineEdit.text = self.link.settings.url
        self.ui.segServerTokenLineEdit.text = self.link.settings.token
        self.ui.segServerStatusLabel.text = self.link.describe()
        self.ui.segServerUrlLineEdit.connect("editingFinished()", self.onServerSettingsChanged)
        self.ui.segServerTokenLineEdit.connect("editingFinished()", self.onServerSettingsChanged)
        self.ui.segSegmentButton.connect("clicked(bool)", lambda: self.onSegment(propagate=False))
        self.ui.segPropagateButton.connect("clicked(bool)", lambda: self.onSegment(propagate=True))
        self.ui.segCancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.segUndoButton.connect("clicked(bool)", self.onUndo)
        self.ui.segMetricsButton.connect("clicked(bool)", self.onMetrics)
        self.ui.segModelComboBox.connect("currentIndexChanged(int)", lambda _: self.showWeightsStatus())
        self.ui.segSegmentationSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onSegmentationChanged)
        self.observe(self.scene, slicer.vtkMRMLScene.EndCloseEvent, self.onSceneClosed)
        # The combo chose its first node in setMRMLScene, before the signal above was connected.
        self.onSegmentationChanged(self.ui.segSegmentationSelector.currentNode())
        self.listModels()
        self.createPromptNodes()

    def createLogic(self):
        from SegmentationToolsLib.finetune_logic import FinetuneLogic

        return FinetuneLogic(self.scene)

    def cleanup(self) -> None:
        self.pollTimer.stop()
        if self.operation is not None and self.session is not None:
            try:
                self.session.client.cancel_operation(self.operation.id)
            except ServerError:
                pass  # the server is gone: nothing left to cancel
        self.operation = None
        self.seedsPart.cleanup()
        super().cleanup()

    # -- server and models ------------------------------------------------------------------------
    def onServerSettingsChanged(self) -> None:
        before = self.link.settings
        self.link.configure(self.ui.segServerUrlLineEdit.text, self.ui.segServerTokenLineEdit.text)
        if self.link.settings != before:
            self.session = self.session_key = None  # the other server holds neither the volume nor the undo steps
        self.ui.segServerStatusLabel.text = self.link.describe()

    def onServerFailed(self, message: str, what: str = "Segmenting") -> None:
        self.setBusy(False)
        self.ui.segServerStatusLabel.text = "The model server could not start (details in the message)."
        super().onServerFailed(message, what)

    def listModels(self, client=None) -> None:
        """The segmenters with their weights status: the server's view once connected (it holds the
        weights), the catalogue's names before."""
        from vfmlab.models.catalogue import names

        if client is None:
            self.model_status = {name: (True, "checked by the model server on first use") for name in names("segmenter")}
        else:
            from SegmentationToolsLib.segment_logic import model_status

            self.model_status = {name: (ok, message) for name, ok, message in model_status(client)}
        combo = self.ui.segModelComboBox
        current = combo.currentText or SegmentConfig.model
        combo.blockSignals(True)
        combo.clear()
        for name in self.model_status:
            combo.addItem(name)
        combo.setCurrentIndex(max(0, combo.findText(current)))
        combo.blockSignals(False)
        self.showWeightsStatus()

    def refreshModelsFromServer(self) -> None:
        """After a fine-tune registered a model: the server lists it (started again if need be)."""
        self.waiter.request(self.listModels, lambda message: None)

    def showWeightsStatus(self) -> None:
        ok, message = self.model_status.get(self.ui.segModelComboBox.currentText, (False, ""))
        self.ui.segWeightsStatusLabel.text = "available" if ok and not message else message
        self.ui.segSegmentButton.enabled = self.ui.segPropagateButton.enabled = ok and self.operation is None

    # -- prompts and the scene -----------------------------------------------------------------------
    def createPromptNodes(self) -> None:
        """Find or make the three prompt markups (again after a scene close, which removed them)."""
        def node(class_name, name, color):
            existing = self.scene.GetFirstNodeByName(name)
            if existing is not None and existing.IsA(class_name):
                return existing
            created = self.scene.AddNewNodeByClass(class_name, name)
            created.CreateDefaultDisplayNodes()
            created.GetDisplayNode().SetSelectedColor(*color)
            return created

        self.positive, self.negative, self.box = (node(*spec) for spec in PROMPT_NODES)
        for widget, markups in ((self.ui.segPositivePlaceWidget, self.positive),
                                (self.ui.segNegativePlaceWidget, self.negative), (self.ui.segBoxPlaceWidget, self.box)):
            widget.setMRMLScene(self.scene)
            widget.setCurrentNode(markups)
            widget.placeMultipleMarkups = widget.ForcePlaceMultipleMarkups if markups is not self.box else widget.ForcePlaceSingleMarkup

    def onSceneClosed(self) -> None:
        """The volume, the segmentation and the prompt nodes are gone: stop following them, make new prompts."""
        if self.operation is not None:
            self.onCancel()
        self.operation = None
        self.pollTimer.stop()
        self.session = self.session_key = None
        self.setBusy(False, "Scene closed.")
        self.ui.segUndoButton.enabled = False
        self.seedsPart.forgetScene()
        self.createPromptNodes()

    def viewAxisAndCentre(self):
        view = self.ui.segViewComboBox.currentText
        slice_node = slicer.app.layoutManager().sliceWidget(view).mrmlSliceNode()
        orientation = slice_node.GetOrientation().lower()
        if orientation not in ("axial", "sagittal", "coronal"):
            raise ValueError(f"the {view} view shows an oblique slice ({orientation}); choose an axial, sagittal or coronal view")
        matrix = slice_node.GetSliceToRAS()
        return orientation, [matrix.GetElement(row, 3) for row in range(3)]

    def currentSession(self, client):
        from SegmentationToolsLib.segment_logic import SegmentSession

        volume_node = self.ui.segVolumeSelector.currentNode()
        if volume_node is None:
            raise ValueError("select the volume to segment")
        key = (volume_node.GetID(), volume_node.GetMTime(), self.ui.segModelComboBox.currentText, client.url)
        if key != self.session_key:
            self.session = SegmentSession(volume_node, client, self.ui.segModelComboBox.currentText)
            self.session_key = key
        else:
            self.session.client = client  # a restarted local server has a new address and token
        return self.session

    # -- segment / propagate / undo ----------------------------------------------------------------
    def onSegment(self, propagate: bool) -> None:
        if self.operation is not None and self.operation.kind == "propagation":
            return
        with slicer.util.tryWithErrorDisplay("Could not segment."):
            if self.ui.segVolumeSelector.currentNode() is None:
                raise ValueError("select the volume to segment")
            self.viewAxisAndCentre()  # an oblique view is refused before the server is asked
            self.setBusy(True, "Connecting to the model server...")
            self.waiter.request(lambda client: self.segmentWith(client, propagate), self.onServerFailed)

    def segmentWith(self, client, propagate: bool) -> None:
        self.ui.segServerStatusLabel.text = self.link.describe()
        try:
            if client.url != self.models_listed_by:  # a server not asked yet: its models and weights
                chosen = self.ui.segModelComboBox.currentText
                self.listModels(client)
                self.models_listed_by = client.url
                if self.ui.segModelComboBox.currentText != chosen:
                    raise ValueError(f"the model server has no model '{chosen}'; choose one of its models")
            if self.operation is not None:  # an encode-ahead: the server keeps what it encoded
                client.cancel_operation(self.operation.id)
                self.operation = None
            with slicer.util.WaitCursor():
                session = self.currentSession(client)
                prompt = self.promptOf(session.volume)
                if propagate:
                    first, seeds = self.seedsPart.seeds.with_current(prompt)
                    rules = {"max_slices": self.ui.segRangeSpinBox.value} if self.ui.segRangeSpinBox.value else {}
                    self.operation = FollowedOperation(session.start_propagation(first, rules, seeds), "propagation",
                                                       self.ui.segViewComboBox.currentText, seeded=bool(seeds))
                    self.setBusy(True, f"Propagating from {len(seeds) + 1} prompted slices..." if seeds
                                 else "Propagating...")
                    self.pollTimer.start()
                    return
                if prompt is None:
                    raise ValueError("place a box or points on the slice first")
                mask, result = session.segment_slice(prompt)
            self.setBusy(False)
            self.writeResult(mask, result)
        except Exception as error:  # shown to the user; the scene is unchanged
            self.setBusy(False)
            slicer.util.errorDisplay(f"Could not segment.\n\n{error}")

    def promptOf(self, volume):
        """The prompt placed on the chosen view's slice of ``volume`` (a Volume; its geometry is enough), or
        None when no markup is placed."""
        from SegmentationToolsLib.segment_logic import prompt_from_markups, slice_index_at

        if not any(node.GetNumberOfControlPoints() for node in (self.positive, self.negative, self.box)):
            return None
        axis, centre = self.viewAxisAndCentre()
        placed = lambda node: node if node.GetNumberOfControlPoints() else None  # noqa: E731
        return prompt_from_markups(volume, axis, placed(self.positive), placed(self.negative), placed(self.box),
                                   slice_index=slice_index_at(volume, axis, centre))

    def onPollTick(self) -> None:
        operation = self.operation
        if operation is None or self.session is None:
            self.pollTimer.stop()
            return
        try:
            status = self.session.client.operation(operation.id)
            if status["state"] == "running":
                if operation.kind == "propagation":
                    self.ui.segStatusLabel.text = f"Propagating: {status['done']} slices, {status['message']}"
                return
            self.operation = None
            self.pollTimer.stop()
            if operation.kind == "propagation":
                self.setBusy(False)
                self.propagationEnded(operation, status)
        except ServerError as error:
            self.operation = None
            self.pollTimer.stop()
            self.setBusy(False)
            slicer.util.errorDisplay(f"The model server stopped answering.\n\n{error}")

    def propagationEnded(self, operation: FollowedOperation, status: dict) -> None:
        if status["state"] == "failed":
            slicer.util.errorDisplay(f"Propagation failed.\n\n{status['error']}")
            return
        if not status.get("has_mask"):
            self.ui.segStatusLabel.text = "Propagation cancelled before the first slice; nothing written."
            return
        mask, result = self.session.propagation_result(operation.id)
        self.writeResult(mask, result, cancelled=status["state"] == "cancelled")
        if operation.seeded:
            self.seedsPart.clear()

    def writeResult(self, mask, result, cancelled: bool = False) -> None:
        mode = MODES[self.ui.segModeComboBox.currentText]
        target = self.ui.segTargetSegmentSelector.currentSegmentID() if mode != "new" else None
        with slicer.util.tryWithErrorDisplay("Could not write the segment.", waitCursor=True):
            if self.ui.segSegmentationSelector.currentNode() is None:
                self.ui.segSegmentationSelector.addNode()
            segment_id = self.session.write(self.ui.segSegmentationSelector.currentNode(), mask,
                                            self.ui.segNameLineEdit.text or "segment", mode, target)
            stops = "; ".join(f"{d}: {r}" for d, r in result.stop_reasons.items())
            quality = f", model IoU estimate {result.predicted_iou:.2f}" if result.predicted_iou is not None else ""
            ending = " (stopped by you)" if cancelled else ""
            self.ui.segStatusLabel.text = (f"Wrote segment {segment_id} on slices {result.slices[0]}..{result.slices[1]}"
                                           f"{quality}{ending}. {stops}")
            self.clearPromptMarkups()
            self.ui.segUndoButton.enabled = self.session.can_undo
            self.encodeAhead(result.slices)

    def clearPromptMarkups(self) -> None:
        for markups in (self.positive, self.negative, self.box):
            markups.RemoveAllControlPoints()

    def encodeAhead(self, slices) -> None:
        """Encode the neighbouring slices on the server while the user looks; the next prompt answers at once."""
        neighbours = [slices[0] - 1, slices[1] + 1, slices[0] - 2, slices[1] + 2]
        try:
            axis, _ = self.viewAxisAndCentre()
            self.operation = FollowedOperation(self.session.encode_ahead(axis, neighbours), "encoding")
            self.pollTimer.start()
        except (ServerError, ValueError):
            self.operation = None  # only a speed-up: the next prompt encodes its slice itself

    def onCancel(self) -> None:
        if self.operation is None or self.session is None:
            return
        try:
            self.session.client.cancel_operation(self.operation.id)
            self.ui.segStatusLabel.text = "Stopping after the current slice..."
        except ServerError as error:
            self.ui.segStatusLabel.text = f"Could not reach the server to stop: {error}"

    def onUndo(self) -> None:
        if self.session is None:
            return
        with slicer.util.tryWithErrorDisplay("Could not undo.", waitCursor=True):
            description = self.session.undo()
            self.ui.segStatusLabel.text = f"Undone: {description}" if description else "Nothing to undo."
        self.ui.segUndoButton.enabled = self.session.can_undo

    def setBusy(self, busy: bool, message: str = "") -> None:
        self.ui.segSegmentButton.enabled = self.ui.segPropagateButton.enabled = not busy
        self.ui.segCancelButton.enabled = busy
        self.ui.segProgressBar.maximum = 0 if busy else 1  # a busy indicator: slice count is not known ahead
        if message:
            self.ui.segStatusLabel.text = message

    # -- metrics ---------------------------------------------------------------------------------
    def onMetrics(self) -> None:
        self.waiter.request(self.metricsWith, lambda message: self.onServerFailed(message, "Computing metrics"))

    def metricsWith(self, client) -> None:
        from SegmentationToolsLib.segment_logic import metrics_rows

        with slicer.util.tryWithErrorDisplay("Could not compute metrics.", waitCursor=True):
            predicted, reference = self.ui.segTargetSegmentSelector, self.ui.segReferenceSegmentSelector
            row = metrics_rows(client, self.ui.segVolumeSelector.currentNode(), predicted.currentNode(),
                               [predicted.currentSegmentID()], reference.currentNode(), [reference.currentSegmentID()])[0]
            table = self.ui.segMetricsTable
            table.setRowCount(len(row))
            for index, (name, value) in enumerate(row.items()):
                table.setItem(index, 0, qt.QTableWidgetItem(name))
                table.setItem(index, 1, qt.QTableWidgetItem(f"{value:.4g}" if isinstance(value, float) else str(value)))

    def onSegmentationChanged(self, node) -> None:
        self.ui.segTargetSegmentSelector.setCurrentNode(node)
        self.finetune.followSegmentation(node)
