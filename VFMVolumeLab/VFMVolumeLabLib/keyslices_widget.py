"""The Key slices panel section (``Resources/UI/KeySlices.ui``): Qt glue over :class:`keyslices_logic.KeySlicesLogic`.

"Find key slices" scores the volume's slices on the model server; the key slices are listed (a click shows
one in the slice view of its axis) under the strip of their thumbnails and the score curve.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Annotated, Optional

import qt
import slicer
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import Choice, Default, parameterNodeWrapper

from vfmlab.keyslices.config import KeySliceConfig

from VFMVolumeLabLib.section_widget import Section

VIEW_OF_AXIS = {"axial": "Red", "sagittal": "Yellow", "coronal": "Green"}  # Slicer's default layout
_DEFAULTS = KeySliceConfig()


@parameterNodeWrapper
class KeySlicesParameters:
    """The section's settings, saved with the scene; defaults are :class:`KeySliceConfig`'s."""

    keyVolume: vtkMRMLScalarVolumeNode
    keySegmentation: Optional[vtkMRMLSegmentationNode]
    keyAxis: Annotated[str, Choice(list(VIEW_OF_AXIS)), Default(_DEFAULTS.axis)]
    keyRatio: Annotated[float, Default(_DEFAULTS.ratio)]
    keyMode: Annotated[str, Choice(["diverse", "contiguous"]), Default(_DEFAULTS.mode)]
    keyOutputDirectory: Annotated[Path, Default(Path(tempfile.gettempdir()) / "VFMKeySlices")]


class KeySlicesSection(Section):
    UI_FILE = Path(__file__).resolve().parents[1] / "Resources" / "UI" / "KeySlices.ui"
    PARAMETERS = KeySlicesParameters
    PARAMETER_PREFIX = "KeySlices"

    def __init__(self, parent_layout, scene=None, link=None) -> None:
        super().__init__(parent_layout, scene, link)
        self.found = None  # (volume node, axis, indices) of the last search
        self.ui.keySliceList.setWrapping(True)
        self.ui.keyFindButton.connect("clicked(bool)", self.onFind)
        self.ui.keyCancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.keySliceList.connect("itemClicked(QListWidgetItem*)", self.onSliceClicked)

    def createLogic(self):
        from VFMVolumeLabLib.keyslices_logic import KeySlicesLogic

        return KeySlicesLogic(self.scene)

    def onFind(self) -> None:
        settings = self.parameters
        if settings is None or self.logic.is_running:
            return
        volumeNode, axis = settings.keyVolume, settings.keyAxis
        outDir = Path(settings.keyOutputDirectory) / time.strftime("%Y%m%d-%H%M%S")

        def start(client) -> None:
            self.logic.start(client, volumeNode, outDir, settings.keyRatio, axis, settings.keyMode,
                             settings.keySegmentation, on_progress=self.onProgress,
                             on_done=lambda state, outcome: self.onDone(state, outcome, volumeNode, axis, outDir))
            self.setRunning(True)

        self.ui.keyStatusLabel.text = "Sending the volume to the model server..."
        self.withServer(start, "Finding key slices")

    def onProgress(self, fraction: float, message: str) -> None:
        self.ui.keyProgressBar.value = int(round(100 * fraction))
        self.ui.keyStatusLabel.text = message

    def onCancel(self) -> None:
        from vfmlab.keyslices.tasks import TASK

        self.logic.cancel(TASK)

    def onDone(self, state: str, outcome, volumeNode, axis: str, outDir: Path) -> None:
        self.setRunning(False)
        if state != "finished":
            self.ui.keyStatusLabel.text = f"Key slices {state}."
            if state == "failed":
                slicer.util.errorDisplay(f"Finding key slices failed.\n\n{outcome}")
            return
        self.found = (volumeNode, axis, outcome["indices"])
        listing = self.ui.keySliceList
        listing.clear()
        for index in outcome["indices"]:
            item = qt.QListWidgetItem(str(index))
            item.setData(qt.Qt.UserRole, index)
            listing.addItem(item)
        covered = outcome["coverage"]["volume"]["covered"]
        self.ui.keyStatusLabel.text = (f"{len(outcome['indices'])} of {outcome['slices']} {axis} slices; "
                                       f"{covered:.0%} of the body's slices within reach. Files in {outDir}.")
        pixmap = qt.QPixmap(str(outDir / "strip.png"))
        if not pixmap.isNull():
            self.ui.keyStripLabel.setPixmap(pixmap.scaledToWidth(min(360, pixmap.width())))

    def onSliceClicked(self, item) -> None:
        """Show the key slice in the slice view of its axis, with the volume in its background."""
        from VFMVolumeLabLib.views import show_in_slice_view

        if self.found is None:
            return
        volumeNode, axis, _ = self.found
        view = VIEW_OF_AXIS[axis]
        layoutManager = slicer.app.layoutManager()
        show_in_slice_view(layoutManager, view, background=volumeNode, fit=False)
        sliceNode = layoutManager.sliceWidget(view).mrmlSliceNode()
        with slicer.util.tryWithErrorDisplay("Could not show the key slice.", waitCursor=False):
            self.logic.jump(sliceNode, volumeNode, axis, int(item.data(qt.Qt.UserRole)))

    def setRunning(self, running: bool) -> None:
        self.ui.keyFindButton.enabled = not running
        self.ui.keyCancelButton.enabled = running
        if running:
            self.ui.keyProgressBar.value = 0
