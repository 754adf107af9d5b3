"""The fine-tuning part of the prompted-segmentation section (its widgets are in ``PromptSegment.ui``):
a checkable list that follows the chosen segmentation's segments, epochs, decoder choice, model name,
Start / Cancel with progress. The work is :class:`finetune_logic.FinetuneLogic`'s, on the model server.
"""
from __future__ import annotations

from pathlib import Path

import qt
import slicer


class FinetunePart:
    def __init__(self, section) -> None:
        self.section = section
        self.ui = section.ui
        self.logic = section.logic  # a FinetuneLogic: the section's jobs are its fine-tuning runs
        self.observed = None  # (vtkSegmentation, observer tags)
        self.ui.segFinetuneStartButton.connect("clicked(bool)", self.onStart)
        self.ui.segFinetuneCancelButton.connect("clicked(bool)", self.onCancel)

    def followSegmentation(self, node) -> None:
        """Follow the chosen segmentation: its segments, as they are added, removed and renamed."""
        if self.observed is not None:
            segmentation, tags = self.observed
            for tag in tags:
                segmentation.RemoveObserver(tag)
            self.section.observations = [(c, t) for c, t in self.section.observations if t not in tags]
            self.observed = None
        if node is not None:
            segmentation = node.GetSegmentation()
            tags = [self.section.observe(segmentation, event, self.refreshSegmentList)
                    for event in (slicer.vtkSegmentation.SegmentAdded, slicer.vtkSegmentation.SegmentRemoved,
                                  slicer.vtkSegmentation.SegmentModified)]
            self.observed = (segmentation, tags)
        self.refreshSegmentList()

    def refreshSegmentList(self) -> None:
        """One checkable row per segment; a segment's check survives a rename or another segment's change."""
        listing = self.ui.segFinetuneSegmentsList
        checked = set(self.checkedSegments())
        listing.clear()
        if self.observed is None:
            return
        segmentation = self.observed[0]
        for index in range(segmentation.GetNumberOfSegments()):
            segment_id = segmentation.GetNthSegmentID(index)
            item = qt.QListWidgetItem(segmentation.GetNthSegment(index).GetName())
            item.setData(qt.Qt.UserRole, segment_id)
            item.setFlags(item.flags() | qt.Qt.ItemIsUserCheckable)
            item.setCheckState(qt.Qt.Checked if segment_id in checked else qt.Qt.Unchecked)
            listing.addItem(item)

    def checkedSegments(self) -> list[str]:
        listing = self.ui.segFinetuneSegmentsList
        return [listing.item(i).data(qt.Qt.UserRole) for i in range(listing.count)
                if listing.item(i).checkState() == qt.Qt.Checked]

    def onStart(self) -> None:
        from SegmentationToolsLib.finetune_logic import panel_finetune_config

        if self.logic.is_running:
            return
        name = self.ui.segFinetuneNameLineEdit.text
        run_dir = Path(slicer.app.temporaryPath) / "VFMVolumeLab" / "finetune" / name
        inputs = (self.ui.segVolumeSelector.currentNode(), self.ui.segSegmentationSelector.currentNode(),
                  self.checkedSegments())
        config = panel_finetune_config(int(self.ui.segFinetuneEpochsSpinBox.value),
                                       self.ui.segFinetuneDecoderCheckBox.checked)

        def start(client) -> None:
            self.logic.start(client, *inputs, run_dir, config, register_as=name, on_progress=self.onProgress,
                             on_done=self.onDone)
            self.ui.segFinetuneStartButton.enabled = False
            self.ui.segFinetuneCancelButton.enabled = True
            self.ui.segFinetuneStatusLabel.text = "Fine-tuning..."

        self.ui.segFinetuneStatusLabel.text = "Sending the volume and the segments to the model server..."
        self.section.withServer(start, "Starting the fine-tuning")

    def onProgress(self, fraction: float, message: str) -> None:
        self.ui.segFinetuneProgressBar.value = int(round(100 * fraction))
        self.ui.segFinetuneStatusLabel.text = message

    def onCancel(self) -> None:
        from SegmentationToolsLib.finetune_logic import FINETUNE

        self.logic.cancel(FINETUNE)

    def onDone(self, state: str, outcome) -> None:
        self.ui.segFinetuneStartButton.enabled = True
        self.ui.segFinetuneCancelButton.enabled = False
        if state == "finished":
            untuned = sum(outcome["baseline_dice"].values()) / len(outcome["baseline_dice"])
            self.ui.segFinetuneStatusLabel.text = (
                f"Held-out Dice {outcome['best_mean_val_dice']:.3f} (un-tuned {untuned:.3f}); "
                f"saved as model '{outcome.get('registered_model', '')}'.")
            self.section.refreshModelsFromServer()
        elif state == "cancelled":
            self.ui.segFinetuneStatusLabel.text = "Fine-tuning cancelled; the best epoch so far is kept."
        else:
            slicer.util.errorDisplay(f"Fine-tuning failed.\n\n{outcome}")
