import logging

import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

# The vfmlab core library and the helpers in VFMVolumeLabLib are imported inside the functions that
# use them: module discovery stays fast and never loads optional packages such as torch.


#
# VFMVolumeLab
#


class VFMVolumeLab(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "VFM Volume Lab"
        self.parent.categories = ["VFM Volume Lab"]
        self.parent.dependencies = []
        self.parent.contributors = ["VFM Volume Lab contributors"]
        self.parent.helpText = (
            "Inspect a volume's geometry (size, spacing, origin, directions, IJK to RAS matrix, value range) "
            "and load the bundled abdomen CT with its reference organ segmentation. "
            "Attention probes: capture volume renderings with their camera poses and measure, per head, what the "
            "attention of a vision foundation model (DINO, CLIP, SAM, LiteMedSAM encoders) follows. "
            "DeepDVR: train a differentiable volume renderer with a learned transfer function in a background "
            "process and apply the learned transfer function to Slicer's volume rendering. "
            "Python dependencies (PyTorch and the model packages) are installed only when you click "
            "'Install dependencies'."
        )
        from VFMVolumeLabLib import documentation_link

        self.parent.helpText += documentation_link()
        self.parent.acknowledgementText = (
            "The sample CT (VFMSampleCT) and its organ labels are the reference files of the "
            '<a href="https://github.com/wasserth/TotalSegmentator">TotalSegmentator</a> project '
            "(Apache-2.0 licence; Wasserthal et al., Radiology: Artificial Intelligence 2023). The labels are "
            "TotalSegmentator's own output, not manual ground truth. Cite TotalSegmentator when publishing "
            "figures made from them."
        )
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData():
    """Add the bundled sample CT (alone, and with its organ segmentation) to the Sample Data module."""
    import SampleData

    import VFMVolumeLabLib
    VFMVolumeLabLib.ensure_vfmlab_importable()
    from VFMVolumeLabLib.sample_data_source import register_sample_data

    def loadWithOrgans(source=None):  # called by the Sample Data module's button
        with slicer.util.tryWithErrorDisplay("Could not load the sample CT with its segmentation.", waitCursor=True):
            volumeNode, _ = VFMVolumeLabLogic().loadSampleWithSegmentation()
            slicer.util.setSliceViewerLayers(background=volumeNode, fit=True)
            return volumeNode

    try:
        register_sample_data(SampleData.SampleDataLogic, organs_loader=loadWithOrgans)
    except Exception as error:  # a missing sample must not break Slicer's start-up
        logging.warning(f"VFM Volume Lab: sample data not registered: {error}")


#
# VFMVolumeLabParameterNode
#


@parameterNodeWrapper
class VFMVolumeLabParameterNode:
    """inputVolume: the volume whose geometry is shown."""

    inputVolume: vtkMRMLScalarVolumeNode


#
# VFMVolumeLabWidget
#


class VFMVolumeLabWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self.probeSection = None
        self.deepDVRSection = None
        self.keySlicesSection = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/VFMVolumeLab.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.ui.geometryTextEdit.setFont(qt.QFontDatabase.systemFont(qt.QFontDatabase.FixedFont))

        self.logic = VFMVolumeLabLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.loadSampleButton.connect("clicked(bool)", self.onLoadSample)
        self.ui.installDependenciesButton.connect("clicked(bool)", self.onInstallDependencies)

        self.initializeParameterNode()
        self.updateDependencyStatus()
        self.mountSections()

    def mountSections(self) -> None:
        """The probe and DeepDVR sections need torch and the model packages: they appear once those are installed."""
        if self.probeSection or self.logic.missingDependencies():
            return
        from VFMVolumeLabLib.dvr_widget import DeepDVRSection
        from VFMVolumeLabLib.keyslices_widget import KeySlicesSection
        from VFMVolumeLabLib.probe_widget import ProbeSection

        self.probeSection = ProbeSection(self.layout)
        self.deepDVRSection = DeepDVRSection(self.layout)
        self.keySlicesSection = KeySlicesSection(self.layout)
        self.layout.addStretch(1)
        self.bindSections()

    def sections(self) -> list:
        return [section for section in (self.probeSection, self.deepDVRSection, self.keySlicesSection)
                if section is not None]

    def bindSections(self) -> None:
        """Each section keeps its settings in this module's parameter node (saved with the scene)."""
        node = self._parameterNode.parameterNode if self._parameterNode else None
        for section in self.sections():
            section.setParameterNode(node)

    def cleanup(self) -> None:
        self.removeObservers()
        for section in self.sections():
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
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGeometry)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # Widgets with the "SlicerParameterName" property in the .ui file follow the parameter node.
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGeometry)
        self.bindSections()
        self.updateGeometry()

    def updateGeometry(self, caller=None, event=None) -> None:
        volumeNode = self._parameterNode.inputVolume if self._parameterNode else None
        self.ui.geometryTextEdit.setPlainText(self.logic.volumeGeometryText(volumeNode))

    def onLoadSample(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not load the sample CT with its segmentation.", waitCursor=True):
            volumeNode, _ = self.logic.loadSampleWithSegmentation()
            self._parameterNode.inputVolume = volumeNode
            slicer.util.setSliceViewerLayers(background=volumeNode, fit=True)

    def updateDependencyStatus(self) -> None:
        missing = self.logic.missingDependencies()
        self.ui.dependencyStatusLabel.text = self.logic.dependencyStatusText(missing)
        self.ui.dependenciesCollapsibleButton.collapsed = not missing

    def onInstallDependencies(self) -> None:
        with slicer.util.tryWithErrorDisplay("Python dependencies were not installed.", waitCursor=False):
            self.logic.installDependencies()
        self.updateDependencyStatus()
        self.mountSections()


#
# VFMVolumeLabLogic
#


class VFMVolumeLabLogic(ScriptedLoadableModuleLogic):
    """Adapts MRML nodes to the vfmlab library. No GUI: usable from the Python console and in tests."""

    def __init__(self, scene=None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        import VFMVolumeLabLib
        VFMVolumeLabLib.ensure_vfmlab_importable()
        self.scene = scene if scene is not None else slicer.mrmlScene

    def getParameterNode(self):
        return VFMVolumeLabParameterNode(super().getParameterNode())

    def volumeGeometryText(self, volumeNode) -> str:
        from VFMVolumeLabLib.geometry import volume_geometry_text
        return volume_geometry_text(volumeNode)

    def loadSampleWithSegmentation(self):
        """Returns ``(volumeNode, segmentationNode)`` of the sample CT and its named organs."""
        from VFMVolumeLabLib.sample_data_source import load_sample_with_segmentation
        return load_sample_with_segmentation(self.scene)

    def missingDependencies(self):
        from VFMVolumeLabLib import dependencies
        return dependencies.missing_packages()

    def dependencyStatusText(self, missing) -> str:
        from VFMVolumeLabLib import dependencies
        return dependencies.status_text(missing)

    def installDependencies(self):
        """Main thread only: may show confirmation dialogs. Returns what is still missing."""
        from VFMVolumeLabLib import dependencies
        return dependencies.install_dependencies()


#
# VFMVolumeLabTest
#


class VFMVolumeLabTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_loadSampleWithSegmentation()
        self.setUp()
        self.test_geometryText()
        self.setUp()
        self.test_sampleDataRegistration()
        self.setUp()
        self.test_sectionsThroughModelServer()

    def test_loadSampleWithSegmentation(self):
        self.delayDisplay("Loading the sample CT with its organ segmentation")
        logic = VFMVolumeLabLogic()
        volumeNode, segmentationNode = logic.loadSampleWithSegmentation()
        self.assertEqual(volumeNode.GetImageData().GetDimensions(), (122, 101, 112))
        segmentation = segmentationNode.GetSegmentation()
        self.assertEqual(segmentation.GetNumberOfSegments(), 61)
        names = {segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())}
        self.assertIn("liver", names)
        self.assertIn("aorta", names)
        self.delayDisplay("Test passed")

    def test_geometryText(self):
        logic = VFMVolumeLabLogic()
        self.assertIn("Select a volume", logic.volumeGeometryText(None))
        volumeNode, _ = logic.loadSampleWithSegmentation()
        text = logic.volumeGeometryText(volumeNode)
        self.assertIn("122 x 101 x 112", text)
        self.assertIn("IJK to RAS", text)
        self.delayDisplay("Test passed")

    def test_sampleDataRegistration(self):
        import SampleData
        registerSampleData()
        registerSampleData()  # a second call must not add duplicates
        names = [source.sampleName for source in SampleData.SampleDataLogic.sampleDataSourcesByCategory("VFM Volume Lab")]
        self.assertEqual(sorted(names), ["VFMSampleCT", "VFMSampleCTOrgans"])
        volumeNode = SampleData.SampleDataLogic().downloadSample("VFMSampleCT")
        self.assertEqual(volumeNode.GetImageData().GetDimensions(), (122, 101, 112))
        self.delayDisplay("Test passed")

    def test_sectionsThroughModelServer(self):
        """Probe one capture and train DeepDVR for two epochs as jobs on the model server (local, or the
        one configured in the module), with the application's volume rendering."""
        import tempfile
        from pathlib import Path

        from VFMVolumeLabLib import dependencies, self_tests
        from VFMVolumeLabLib.server_link import shared_link

        if dependencies.missing_packages():
            self.delayDisplay("Skipped the model-server checks: install the Python dependencies first")
            return
        self.delayDisplay("Starting the model server")
        client = shared_link().connection.wait_client()
        folder = Path(tempfile.mkdtemp(prefix="VFMVolumeLabSelfTest-", dir=slicer.app.temporaryPath))
        renderingLogic = slicer.modules.volumerendering.logic()
        probed = self_tests.probe_one_capture(slicer.mrmlScene, client, folder / "probe", renderingLogic)
        self.delayDisplay(f"Probed one capture: {probed['heads']} LiteMedSAM heads")
        slicer.mrmlScene.Clear()
        trained = self_tests.deepdvr_two_epochs(slicer.mrmlScene, client, folder / "dvr", renderingLogic)
        self.delayDisplay(f"DeepDVR, two epochs: validation SSIM {trained['best_val_ssim']:.3f}")
