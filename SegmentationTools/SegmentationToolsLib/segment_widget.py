"""Qt glue of the prompted-segmentation section (``Resources/UI/PromptSegment.ui``); the work is in
:mod:`segment_logic`.

Model inference runs on a worker thread (torch releases the GIL), polled by a timer, so the GUI stays
responsive during propagation; the scene is only changed on the main thread. Fine-tuning runs as a
background process. Mount from the module widget's ``setup()``::

    from SegmentationToolsLib.segment_widget import PromptSegmentSection
    self.promptSection = PromptSegmentSection(self.layout)

and call ``self.promptSection.cleanup()`` from the widget's ``cleanup()``.
"""
from __future__ import annotations

import threading
from pathlib import Path

import qt
import slicer

from vfmlab.segment.config import SegmentConfig

UI_FILE = Path(__file__).resolve().parents[1] / "Resources" / "UI" / "PromptSegment.ui"
MODES = ("new", "replace", "add", "subtract")  # in the order of segModeComboBox's items


class Worker:
    """Runs ``function`` on a thread; ``result``/``error`` are read by the main thread once ``done``."""

    def __init__(self, function, prefetch: bool = False):
        self.prefetch = prefetch  # background encoding the user need not wait for
        self.cancel_requested = False
        self.done = False
        self.result = self.error = None
        self.progress = ""

        def run():
            try:
                self.result = function(self)
            except Exception as error:  # reported on the main thread
                self.error = error
            self.done = True

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.cancel_requested = True
        self.thread.join()


class PromptSegmentSection:
    def __init__(self, parent_layout, scene=None):
        import VFMVolumeLabLib

        VFMVolumeLabLib.ensure_vfmlab_importable()
        self.scene = scene or slicer.mrmlScene
        self.widget = slicer.util.loadUI(str(UI_FILE))
        parent_layout.addWidget(self.widget)
        self.ui = slicer.util.childWidgetVariables(self.widget)
        self.widget.setMRMLScene(self.scene)
        self.session = None
        self.session_key = None
        self.worker = None
        self.finetune_process = None
        self.timer = qt.QTimer()
        self.timer.setInterval(100)
        self.timer.connect("timeout()", self.onWorkerTick)
        self.ui.segMetricsTable.setColumnCount(2)
        self.ui.segMetricsTable.setHorizontalHeaderLabels(["Metric", "Value"])
        self.ui.segMetricsTable.horizontalHeader().setStretchLastSection(True)
        self.ui.segSegmentButton.connect("clicked(bool)", lambda: self.onSegment(propagate=False))
        self.ui.segPropagateButton.connect("clicked(bool)", lambda: self.onSegment(propagate=True))
        self.ui.segCancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.segUndoButton.connect("clicked(bool)", self.onUndo)
        self.ui.segMetricsButton.connect("clicked(bool)", self.onMetrics)
        self.ui.segModelComboBox.connect("currentIndexChanged(int)", lambda _: self.showWeightsStatus())
        self.ui.segSegmentationSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onSegmentationChanged)
        self.ui.segFinetuneStartButton.connect("clicked(bool)", self.onFinetune)
        self.ui.segFinetuneCancelButton.connect("clicked(bool)", self.onFinetuneCancel)
        self.refreshModels()
        self.createPromptNodes()

    def cleanup(self) -> None:
        self.timer.stop()
        if self.worker is not None:
            self.worker.cancel_requested = True
        if self.finetune_process is not None and self.finetune_process.is_running:
            self.finetune_process.cancel()

    # -- models and prompts ---------------------------------------------------------------------
    def refreshModels(self) -> None:
        from SegmentationToolsLib.segment_logic import model_status

        self.model_status = {name: (ok, message) for name, ok, message in model_status()}
        combo = self.ui.segModelComboBox
        current = combo.currentText or SegmentConfig.model
        combo.clear()
        for name in self.model_status:
            combo.addItem(name)
        combo.setCurrentIndex(max(0, combo.findText(current)))
        self.showWeightsStatus()

    def showWeightsStatus(self) -> None:
        ok, message = self.model_status.get(self.ui.segModelComboBox.currentText, (False, ""))
        self.ui.segWeightsStatusLabel.text = "available" if ok else message
        self.ui.segSegmentButton.enabled = self.ui.segPropagateButton.enabled = ok

    def createPromptNodes(self) -> None:
        def node(class_name, name, color):
            existing = self.scene.GetFirstNodeByName(name)
            if existing is not None:
                return existing
            created = self.scene.AddNewNodeByClass(class_name, name)
            created.CreateDefaultDisplayNodes()
            created.GetDisplayNode().SetSelectedColor(*color)
            return created

        self.positive = node("vtkMRMLMarkupsFiducialNode", "SAM inside", (0.1, 0.8, 0.2))
        self.negative = node("vtkMRMLMarkupsFiducialNode", "SAM outside", (0.9, 0.1, 0.1))
        self.box = node("vtkMRMLMarkupsROINode", "SAM box", (1.0, 0.8, 0.1))
        for widget, markups in ((self.ui.segPositivePlaceWidget, self.positive),
                                (self.ui.segNegativePlaceWidget, self.negative), (self.ui.segBoxPlaceWidget, self.box)):
            widget.setMRMLScene(self.scene)
            widget.setCurrentNode(markups)
            widget.placeMultipleMarkups = widget.ForcePlaceMultipleMarkups if markups is not self.box else widget.ForcePlaceSingleMarkup

    def viewAxisAndCentre(self):
        view = self.ui.segViewComboBox.currentText
        slice_node = slicer.app.layoutManager().sliceWidget(view).mrmlSliceNode()
        orientation = slice_node.GetOrientation().lower()
        if orientation not in ("axial", "sagittal", "coronal"):
            raise ValueError(f"the {view} view shows an oblique slice ({orientation}); choose an axial, sagittal or coronal view")
        matrix = slice_node.GetSliceToRAS()
        return orientation, [matrix.GetElement(row, 3) for row in range(3)]

    def currentSession(self):
        from SegmentationToolsLib.segment_logic import SegmentSession

        volume_node = self.ui.segVolumeSelector.currentNode()
        if volume_node is None:
            raise ValueError("select the volume to segment")
        device = None if self.ui.segDeviceComboBox.currentText == "auto" else self.ui.segDeviceComboBox.currentText
        key = (volume_node.GetID(), volume_node.GetMTime(), self.ui.segModelComboBox.currentText, device)
        if key != self.session_key:
            with slicer.util.WaitCursor():
                self.session = SegmentSession(volume_node, self.ui.segModelComboBox.currentText, device)
            self.session_key = key
        return self.session

    # -- segment / propagate / undo ----------------------------------------------------------------
    def onSegment(self, propagate: bool) -> None:
        from vfmlab.segment.propagate import PropagationConfig

        if self.worker is not None:
            if not self.worker.prefetch:
                return
            self.worker.stop()  # ends after the slice being encoded; it stays cached
            self.worker = None
        with slicer.util.tryWithErrorDisplay("Could not segment.", waitCursor=True):
            session = self.currentSession()
            axis, centre = self.viewAxisAndCentre()
            use_points = lambda node: node if node.GetNumberOfControlPoints() else None  # noqa: E731
            prompt = session.prompt_from_markups(axis, use_points(self.positive), use_points(self.negative),
                                                 self.box if self.box.GetNumberOfControlPoints() else None,
                                                 slice_index=session.slice_index_at(axis, centre))
            if self.ui.segSegmentationSelector.currentNode() is None:
                self.ui.segSegmentationSelector.addNode()
            config = PropagationConfig(max_slices=self.ui.segRangeSpinBox.value or None)

            def compute(worker):
                def on_slice(record):
                    worker.progress = f"slice {record.index}: {'accepted' if record.accepted else record.reason}"
                return session.compute(prompt, propagate, config, on_slice, lambda: worker.cancel_requested)

            self.worker = Worker(compute)
            self.setBusy(True, "Propagating..." if propagate else "Segmenting...")

    def onWorkerTick(self) -> None:
        worker = self.worker
        if worker is None:
            self.timer.stop()
            return
        self.ui.segStatusLabel.text = worker.progress or self.ui.segStatusLabel.text
        if not worker.done:
            return
        self.worker = None
        self.setBusy(False)
        if worker.error is not None:
            slicer.util.errorDisplay(f"Segmentation failed.\n\n{worker.error}")
            return
        if worker.result is None:  # encode-ahead finished
            return
        mask, result = worker.result
        mode = MODES[self.ui.segModeComboBox.currentIndex]
        target = self.ui.segTargetSegmentSelector.currentSegmentID() if mode != "new" else None
        with slicer.util.tryWithErrorDisplay("Could not write the segment.", waitCursor=True):
            segment_id = self.session.write(self.ui.segSegmentationSelector.currentNode(), mask,
                                            self.ui.segNameLineEdit.text or "segment", mode, target)
            stops = "; ".join(f"{d}: {r}" for d, r in result.stop_reasons.items())
            quality = f", model IoU estimate {result.predicted_iou:.2f}" if result.predicted_iou is not None else ""
            self.ui.segStatusLabel.text = (f"Wrote segment {segment_id} on slices {result.slices[0]}..{result.slices[1]}"
                                           f"{quality}. {stops}")
            for markups in (self.positive, self.negative, self.box):
                markups.RemoveAllControlPoints()
        self.ui.segUndoButton.enabled = self.session.can_undo
        self.encodeAhead(result.slices)

    def encodeAhead(self, slices) -> None:
        """Encode the neighbouring slices while the user looks, so the next prompt answers at once."""
        axis, _ = self.viewAxisAndCentre()
        session = self.session
        neighbours = [slices[0] - 1, slices[1] + 1, slices[0] - 2, slices[1] + 2]

        def encode(worker):
            session.segmenter.encode_ahead(axis, neighbours, lambda: worker.cancel_requested)

        self.worker = Worker(encode, prefetch=True)
        self.timer.start()

    def onCancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel_requested = True
            self.ui.segStatusLabel.text = "Cancelling after the current slice..."

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
        if busy:
            self.timer.start()

    # -- metrics ---------------------------------------------------------------------------------
    def onMetrics(self) -> None:
        from SegmentationToolsLib.segment_logic import metrics_rows

        with slicer.util.tryWithErrorDisplay("Could not compute metrics.", waitCursor=True):
            predicted, reference = self.ui.segTargetSegmentSelector, self.ui.segReferenceSegmentSelector
            row = metrics_rows(self.ui.segVolumeSelector.currentNode(), predicted.currentNode(),
                               [predicted.currentSegmentID()], reference.currentNode(), [reference.currentSegmentID()])[0]
            table = self.ui.segMetricsTable
            table.setRowCount(len(row))
            for index, (name, value) in enumerate(row.items()):
                table.setItem(index, 0, qt.QTableWidgetItem(name))
                table.setItem(index, 1, qt.QTableWidgetItem(f"{value:.4g}" if isinstance(value, float) else str(value)))

    # -- fine-tuning -----------------------------------------------------------------------------
    def onSegmentationChanged(self, node) -> None:
        self.ui.segTargetSegmentSelector.setCurrentNode(node)
        listing = self.ui.segFinetuneSegmentsList
        listing.clear()
        if node is None:
            return
        segmentation = node.GetSegmentation()
        for index in range(segmentation.GetNumberOfSegments()):
            item = qt.QListWidgetItem(segmentation.GetNthSegment(index).GetName())
            item.setData(qt.Qt.UserRole, segmentation.GetNthSegmentID(index))
            item.setFlags(item.flags() | qt.Qt.ItemIsUserCheckable)
            item.setCheckState(qt.Qt.Unchecked)
            listing.addItem(item)

    def onFinetune(self) -> None:
        from SegmentationToolsLib.segment_logic import finetune_job_params, panel_finetune_config
        from VFMVolumeLabLib.BackgroundProcess import BackgroundProcess

        listing = self.ui.segFinetuneSegmentsList
        segment_ids = [listing.item(i).data(qt.Qt.UserRole) for i in range(listing.count)
                       if listing.item(i).checkState() == qt.Qt.Checked]
        with slicer.util.tryWithErrorDisplay("Could not start fine-tuning.", waitCursor=True):
            if not segment_ids:
                raise ValueError("check at least one segment to train on")
            run_dir = Path(slicer.app.temporaryPath) / "VFMVolumeLab" / "finetune" / self.ui.segFinetuneNameLineEdit.text
            params = finetune_job_params(self.ui.segVolumeSelector.currentNode(),
                                         self.ui.segSegmentationSelector.currentNode(), segment_ids, run_dir,
                                         panel_finetune_config(int(self.ui.segFinetuneEpochsSpinBox.value),
                                                               self.ui.segFinetuneDecoderCheckBox.checked),
                                         register_as=self.ui.segFinetuneNameLineEdit.text)
            self.finetune_process = BackgroundProcess("segment-finetune", params, run_dir / "job",
                                                      module="vfmlab.segment.tasks",
                                                      on_progress=self.onFinetuneProgress, on_done=self.onFinetuneDone)
            self.finetune_process.start()
            self.ui.segFinetuneStartButton.enabled = False
            self.ui.segFinetuneCancelButton.enabled = True

    def onFinetuneProgress(self, fraction: float, message: str) -> None:
        self.ui.segFinetuneProgressBar.value = int(round(100 * fraction))
        self.ui.segFinetuneStatusLabel.text = message

    def onFinetuneCancel(self) -> None:
        if self.finetune_process is not None:
            self.finetune_process.cancel()

    def onFinetuneDone(self, state: str, outcome) -> None:
        self.ui.segFinetuneStartButton.enabled = True
        self.ui.segFinetuneCancelButton.enabled = False
        if state == "finished":
            untuned = sum(outcome["baseline_dice"].values()) / len(outcome["baseline_dice"])
            self.ui.segFinetuneStatusLabel.text = (
                f"Held-out Dice {outcome['best_mean_val_dice']:.3f} (un-tuned {untuned:.3f}); "
                f"saved as model '{outcome.get('registered_model', '')}'.")
            self.refreshModels()
        elif state == "cancelled":
            self.ui.segFinetuneStatusLabel.text = "Fine-tuning cancelled; the best epoch so far is kept."
        else:
            slicer.util.errorDisplay(f"Fine-tuning failed.\n\n{outcome}")
