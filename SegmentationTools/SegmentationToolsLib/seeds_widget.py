"""The "prompts on several slices" part of the prompted-segmentation section (its widgets are in
``PromptSegment.ui``): find the volume's key slices on the model server, step the chosen view through
them, keep the prompt placed on each as a seed; Propagate then starts from every seed.

The key slices come from :class:`VFMVolumeLabLib.keyslices_logic.KeySlicesLogic` (the ``keyslices`` job on
the server, image only); the seeds are a :class:`segment_logic.SeedPrompts`.
"""
from __future__ import annotations

import time
from pathlib import Path

import slicer

from vfmlab.keyslices.config import KeySliceConfig


class SeedsPart:
    def __init__(self, section) -> None:
        from SegmentationToolsLib.segment_logic import SeedPrompts
        from VFMVolumeLabLib.keyslices_logic import KeySlicesLogic

        self.section = section
        self.ui = section.ui
        self.seeds = SeedPrompts()
        self.keyLogic = KeySlicesLogic(section.scene)
        self.keySlices = None  # (volume node ID, axis, indices) of the last search
        self.ui.segKeySlicesButton.connect("clicked(bool)", self.onFindKeySlices)
        self.ui.segNextKeySliceButton.connect("clicked(bool)", self.onNextKeySlice)
        self.ui.segAddSeedButton.connect("clicked(bool)", self.onAddSeed)
        self.ui.segClearSeedsButton.connect("clicked(bool)", self.clear)
        # seeds are positions on one volume's slices: another volume starts without them
        self.ui.segVolumeSelector.connect("currentNodeChanged(vtkMRMLNode*)", lambda node: self.clear())

    def cleanup(self) -> None:
        self.keyLogic.cleanup()

    def forgetScene(self) -> None:
        """After a scene close: the volume the seeds and key slices were on is gone."""
        from vfmlab.keyslices.tasks import TASK

        self.keyLogic.cancel(TASK)
        self.keySlices = None
        self.ui.segNextKeySliceButton.enabled = False
        self.clear()

    # -- key slices -----------------------------------------------------------------------------------
    def onFindKeySlices(self) -> None:
        from vfmlab.keyslices.tasks import TASK

        if self.keyLogic.running(TASK):
            return
        with slicer.util.tryWithErrorDisplay("Could not find key slices."):
            volumeNode = self.ui.segVolumeSelector.currentNode()
            if volumeNode is None:
                raise ValueError("select the volume to find key slices in")
            axis, _ = self.section.viewAxisAndCentre()
            outDir = Path(slicer.app.temporaryPath) / "VFMVolumeLab" / "keyslices" / time.strftime("%Y%m%d-%H%M%S")

            def start(client) -> None:
                self.keyLogic.start(client, volumeNode, outDir, KeySliceConfig().ratio, axis,
                                    on_progress=lambda fraction, message: setattr(self.ui.segSeedsLabel, "text",
                                                                                  f"Key slices: {message}"),
                                    on_done=lambda state, outcome: self.onKeySlicesDone(state, outcome, volumeNode,
                                                                                        axis))
                self.ui.segKeySlicesButton.enabled = False

            self.ui.segSeedsLabel.text = "Sending the volume to the model server..."
            self.section.withServer(start, "Finding key slices")

    def onKeySlicesDone(self, state: str, outcome, volumeNode, axis: str) -> None:
        self.ui.segKeySlicesButton.enabled = True
        if state != "finished":
            self.ui.segSeedsLabel.text = f"Key slices {state}. {self.seeds.describe()}"
            if state == "failed":
                slicer.util.errorDisplay(f"Finding key slices failed.\n\n{outcome}")
            return
        self.keySlices = (volumeNode.GetID(), axis, sorted(outcome["indices"]))
        self.ui.segNextKeySliceButton.enabled = bool(outcome["indices"])
        self.ui.segSeedsLabel.text = (f"{len(outcome['indices'])} key {axis} slices: "
                                      f"{', '.join(map(str, outcome['indices']))}. {self.seeds.describe()}")

    def onNextKeySlice(self) -> None:
        """Move the chosen view onto the first key slice past the one it shows (round the end), through the
        slice's RAS centre."""
        if self.keySlices is None:
            return
        volumeId, axis, indices = self.keySlices
        with slicer.util.tryWithErrorDisplay("Could not show the key slice."):
            volumeNode = self.section.scene.GetNodeByID(volumeId)
            if volumeNode is None or volumeNode is not self.ui.segVolumeSelector.currentNode():
                raise ValueError("the key slices are of another volume; find them for the chosen one")
            viewAxis, centre = self.section.viewAxisAndCentre()
            if viewAxis != axis:
                raise ValueError(f"the key slices are {axis} slices; choose a view showing {axis} slices")
            index = self.keyLogic.next_key_slice(volumeNode, axis, centre, indices)
            sliceNode = slicer.app.layoutManager().sliceWidget(self.ui.segViewComboBox.currentText).mrmlSliceNode()
            self.keyLogic.jump(sliceNode, volumeNode, axis, index)
            self.ui.segSeedsLabel.text = (f"Key slice {indices.index(index) + 1} of {len(indices)}: {axis} "
                                          f"slice {index}. {self.seeds.describe()}")

    # -- seeds ------------------------------------------------------------------------------------------
    def onAddSeed(self) -> None:
        """Keep the placed prompt as a seed: positions only, so neither the voxels nor the server are needed."""
        from vfmlab import mrml

        with slicer.util.tryWithErrorDisplay("Could not add the seed."):  # seeds and markups stay as they were
            volumeNode = self.ui.segVolumeSelector.currentNode()
            if volumeNode is None:
                raise ValueError("select the volume to segment")
            prompt = self.section.promptOf(mrml.volume_geometry(volumeNode))
            if prompt is None:
                raise ValueError("place a box or points on the slice first")
            self.seeds.add(prompt)
            self.section.clearPromptMarkups()
            self.showSeeds()

    def clear(self) -> None:
        self.seeds.clear()
        self.showSeeds()

    def showSeeds(self) -> None:
        self.ui.segSeedsLabel.text = self.seeds.describe()
        self.ui.segClearSeedsButton.enabled = bool(self.seeds.prompts)
