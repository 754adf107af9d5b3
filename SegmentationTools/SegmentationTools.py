from pathlib import Path

import qt
import slicer
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

# vfmlab, SegmentationToolsLib and the shared VFMVolumeLabLib (installed beside this module by the
# VFM Volume Lab extension) are imported inside the functions that use them.


#
# SegmentationTools
#


class SegmentationTools(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Segmentation Tools"
        self.parent.categories = ["VFM Volume Lab"]
        # VFM Volume Lab provides the shared helpers (dependencies, vfmlab path) and the sample data.
        self.parent.dependencies = ["VFMVolumeLab"]
        self.parent.contributors = ["VFM Volume Lab contributors"]
        self.parent.helpText = (
            "Turn label map files into segmentations: pick the volume the labels were drawn on, then import a "
            "label map (NRRD, NIfTI, MHA) as a new segmentation with one segment per label. Segment names are "
            "read from a JSON file beside the label map (X.json, X_names.json or X_label_names.json) when present."
        )
        from VFMVolumeLabLib import documentation_link

        self.parent.helpText += documentation_link()
        self.parent.acknowledgementText = (
            "The bundled sample CT and organ labels used in the tests are reference files of the "
            '<a href="https://github.com/wasserth/TotalSegmentator">TotalSegmentator</a> project '
            "(Apache-2.0 licence; Wasserthal et al., Radiology: Artificial Intelligence 2023)."
        )


#
# SegmentationToolsParameterNode
#


@parameterNodeWrapper
class SegmentationToolsParameterNode:
    """inputVolume: the grid label maps must lie on. segmentation: the segmentation being worked on."""

    inputVolume: vtkMRMLScalarVolumeNode
    segmentation: vtkMRMLSegmentationNode


#
# SegmentationToolsWidget
#


class SegmentationToolsWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SegmentationTools.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = SegmentationToolsLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.importLabelMapButton.connect("clicked(bool)", self.onImportLabelMap)
        self.ui.installDependenciesButton.connect("clicked(bool)", self.onInstallDependencies)

        self.sections = []
        self.initializeParameterNode()
        self.updateDependencyStatus()
        self.mountSections()

    def mountSections(self) -> None:
        """The model sections need torch and the model packages: they appear once those are installed."""
        from VFMVolumeLabLib import dependencies

        if self.sections or dependencies.missing_packages():
            return
        from SegmentationToolsLib.btvae_widget import BTVAESection
        from SegmentationToolsLib.segment_widget import PromptSegmentSection

        self.sections = [PromptSegmentSection(self.layout), BTVAESection(self.layout)]
        self.layout.addStretch(1)
        self.bindSections()

    def bindSections(self) -> None:
        """Each section keeps its settings in this module's parameter node (saved with the scene)."""
        node = self._parameterNode.parameterNode if self._parameterNode else None
        for section in self.sections:
            section.setParameterNode(node)

    def cleanup(self) -> None:
        self.removeObservers()
        for section in self.sections:
            section.cleanup()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode:
                self._parameterNode.inputVolume = firstVolumeNode

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # Widgets with the "SlicerParameterName" property in the .ui file follow the parameter node.
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
        self.bindSections()

    def onImportLabelMap(self) -> None:
        volumeNode = self._parameterNode.inputVolume if self._parameterNode else None
        if volumeNode is None:
            slicer.util.errorDisplay("Select the input volume the label map was drawn on first.")
            return
        path = qt.QFileDialog.getOpenFileName(
            slicer.util.mainWindow(), "Import label map as segments", "", self.logic.labelMapFileFilter()
        )
        if not path:
            return
        from vfmlab.errors import VfmlabError

        try:
            with slicer.util.WaitCursor():
                segmentationNode = self.logic.importLabelMapFile(path, volumeNode)
        except VfmlabError as error:
            slicer.util.errorDisplay(f"Could not import {Path(path).name} as segments.\n\n{error}")
            return
        self._parameterNode.segmentation = segmentationNode

    def updateDependencyStatus(self) -> None:
        from VFMVolumeLabLib import dependencies

        missing = dependencies.missing_packages()
        self.ui.dependencyStatusLabel.text = dependencies.status_text(missing)
        self.ui.dependenciesCollapsibleButton.collapsed = not missing

    def onInstallDependencies(self) -> None:
        from VFMVolumeLabLib import dependencies

        with slicer.util.tryWithErrorDisplay("Python dependencies were not installed.", waitCursor=False):
            dependencies.install_dependencies()
        self.updateDependencyStatus()
        self.mountSections()


#
# SegmentationToolsLogic
#


class SegmentationToolsLogic(ScriptedLoadableModuleLogic):
    """Adapts MRML nodes to the vfmlab library. No GUI: usable from the Python console and in tests."""

    def __init__(self, scene=None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        import VFMVolumeLabLib
        VFMVolumeLabLib.ensure_vfmlab_importable()
        self.scene = scene if scene is not None else slicer.mrmlScene

    def getParameterNode(self):
        return SegmentationToolsParameterNode(super().getParameterNode())

    def labelMapFileFilter(self) -> str:
        from SegmentationToolsLib.label_import import LABEL_MAP_FILE_FILTER
        return LABEL_MAP_FILE_FILTER

    def importLabelMapFile(self, path, volumeNode, names=None):
        """New segmentation node from the label map at ``path`` on ``volumeNode``'s grid.

        Raises ``vfmlab.errors.InputError`` (scene unchanged) when the file cannot be used.
        """
        from SegmentationToolsLib.label_import import import_label_map
        return import_label_map(self.scene, path, volumeNode, names=names)


#
# SegmentationToolsTest
#


class SegmentationToolsTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_importSampleLabels()
        self.setUp()
        self.test_importRefusesLabelsOnAnotherGrid()
        self.setUp()
        self.test_sectionsThroughModelServer()

    def _loadSampleVolume(self):
        import VFMVolumeLabLib
        VFMVolumeLabLib.ensure_vfmlab_importable()
        from vfmlab.volume_io import read_volume
        from vfmlab.mrml import add_volume_node
        from vfmlab.sample_data import sample_ct_path

        return add_volume_node(slicer.mrmlScene, read_volume(sample_ct_path()), name="VFMSampleCT")

    def test_importSampleLabels(self):
        from vfmlab.sample_data import sample_labels_path

        volumeNode = self._loadSampleVolume()
        segmentationNode = SegmentationToolsLogic().importLabelMapFile(sample_labels_path(), volumeNode)
        segmentation = segmentationNode.GetSegmentation()
        self.assertEqual(segmentation.GetNumberOfSegments(), 61)
        names = {segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())}
        self.assertIn("liver", names)  # read from VFMSampleCT_label_names.json beside the file
        self.delayDisplay("Test passed")

    def test_importRefusesLabelsOnAnotherGrid(self):
        import numpy as np
        from vfmlab.errors import InputError
        from vfmlab.volume_io import write_volume
        from vfmlab.volume import Volume

        volumeNode = self._loadSampleVolume()
        path = Path(slicer.app.temporaryPath) / "VFMSegmentationToolsTest_small_labels.nrrd"
        write_volume(Volume(np.ones((4, 5, 6), dtype=np.uint8)), path)
        before = slicer.mrmlScene.GetNumberOfNodes()
        with self.assertRaises(InputError):
            SegmentationToolsLogic().importLabelMapFile(path, volumeNode)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), before)
        self.delayDisplay("Test passed")

    def test_sectionsThroughModelServer(self):
        """Segment and propagate with LiteMedSAM, then train and predict a small BT-VAE, on the model server
        (local, or the one configured in the module)."""
        import tempfile

        import VFMVolumeLabLib
        VFMVolumeLabLib.ensure_vfmlab_importable()
        from SegmentationToolsLib import self_tests
        from VFMVolumeLabLib import dependencies
        from VFMVolumeLabLib.server_link import shared_link

        if dependencies.missing_packages():
            self.delayDisplay("Skipped the model-server checks: install the Python dependencies first")
            return
        self.delayDisplay("Starting the model server")
        client = shared_link().connection.wait_client()
        segmented = self_tests.segment_and_propagate(slicer.mrmlScene, client)
        self.delayDisplay(f"Right kidney propagated from one box: Dice {segmented['dice']:.3f}; "
                          f"from two seeds: {segmented['seeded_dice']:.3f}")
        slicer.mrmlScene.Clear()
        folder = Path(tempfile.mkdtemp(prefix="SegmentationToolsSelfTest-", dir=slicer.app.temporaryPath))
        predicted = self_tests.btvae_predict(slicer.mrmlScene, client, folder)
        self.delayDisplay(f"BT-VAE trained and predicted on the server: liver Dice {predicted['dice']:.3f}")
