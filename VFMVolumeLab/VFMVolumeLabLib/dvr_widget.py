"""The DeepDVR panel section (``Resources/UI/DeepDVR.ui``): Qt glue over :class:`dvr_logic.DeepDVRLogic`.

Mounted by the module widget's ``setup()``::

    from VFMVolumeLabLib.dvr_widget import DeepDVRSection
    self.deepDVRSection = DeepDVRSection(self.layout)

Training and rendering run as jobs on the model server; a training run goes on when the panel goes
away (its run folder records it, and Resume continues it), so cleanup only stops following it.
"""
from __future__ import annotations

import tempfile
from dataclasses import fields
from pathlib import Path
from typing import Annotated

import qt
import slicer
from slicer import vtkMRMLScalarVolumeNode
from slicer.parameterNodeWrapper import Choice, Default, parameterNodeWrapper

from vfmlab.dvr.config import DEFAULT_S_HIGH, TrainConfig
from vfmlab.models import names
from vfmlab.render.presets import preset_names

from VFMVolumeLabLib.section_widget import Section

CURRENT_TF = "(volume's current rendering)"
HOME = Path(tempfile.gettempdir()) / "DeepDVR"
_TRAINING = {field.name: field.default for field in fields(TrainConfig)}  # captures has none


@parameterNodeWrapper
class DeepDVRParameters:
    """The section's settings, saved with the scene; defaults are the training config's."""

    dvrVolume: vtkMRMLScalarVolumeNode
    dvrCapturePreset: Annotated[str, Choice(preset_names() + [CURRENT_TF]), Default("CT-AAA")]
    dvrCaptureViews: Annotated[int, Default(20)]
    dvrCapturesPath: Annotated[Path, Default(HOME / "captures")]
    dvrModel: Annotated[str, Choice(list(names("dvr"))), Default(_TRAINING["model"])]
    dvrSize: Annotated[str, Choice(["small", "paper"]), Default(_TRAINING["size"])]
    dvrEpochs: Annotated[int, Default(_TRAINING["epochs"])]
    dvrSLow: Annotated[float, Default(_TRAINING["s_low"])]
    dvrSHigh: Annotated[float, Default(DEFAULT_S_HIGH)]
    dvrRunPath: Annotated[Path, Default(HOME / "run")]


class DeepDVRSection(Section):
    """Captures, model and annealing range; Start/Stop/Resume with progress, plot and preview; results."""

    UI_FILE = Path(__file__).resolve().parents[1] / "Resources" / "UI" / "DeepDVR.ui"
    PARAMETERS = DeepDVRParameters
    PARAMETER_PREFIX = "DeepDVR"

    def __init__(self, parent_layout, scene=None, link=None) -> None:
        super().__init__(parent_layout, scene, link)
        self.logic.on_progress = self.onProgress
        self.logic.on_done = self.onDone
        self.logic.on_update = self.onUpdate
        self.ui.captureNowButton.connect("clicked(bool)", self.onCaptureNow)
        self.ui.startButton.connect("clicked(bool)", self.onStart)
        self.ui.stopButton.connect("clicked(bool)", self.onStop)
        self.ui.resumeButton.connect("clicked(bool)", self.onResume)
        self.ui.showPlotButton.connect("clicked(bool)", self.onShowPlot)
        self.ui.applyTFButton.connect("clicked(bool)", self.onApplyTF)
        self.ui.renderViewButton.connect("clicked(bool)", self.onRenderView)
        self.updateButtons()

    def createLogic(self):
        from VFMVolumeLabLib.dvr_logic import DeepDVRLogic

        return DeepDVRLogic(self.scene)

    def updateButtons(self) -> None:
        running = self.logic.is_running
        self.ui.startButton.enabled = not running
        self.ui.resumeButton.enabled = not running
        self.ui.stopButton.enabled = running
        self.ui.captureNowButton.enabled = not running

    def onCaptureNow(self) -> None:
        settings = self.parameters
        if settings is None or settings.dvrVolume is None:
            slicer.util.errorDisplay("Select a volume to capture.")
            return
        preset = None if settings.dvrCapturePreset == CURRENT_TF else settings.dvrCapturePreset
        with slicer.util.tryWithErrorDisplay("Capture failed.", waitCursor=True):
            out = self.logic.capture_now(settings.dvrVolume, settings.dvrCapturesPath, views=settings.dvrCaptureViews,
                                         preset=preset, volume_rendering_logic=slicer.modules.volumerendering.logic())
            self.ui.trainingStatusLabel.text = f"Captured {settings.dvrCaptureViews} views into {out}."

    def onStart(self) -> None:
        settings = self.parameters

        def start(client) -> None:
            self.logic.start(client, settings.dvrCapturesPath, settings.dvrRunPath, model=settings.dvrModel,
                             epochs=settings.dvrEpochs, s_low=settings.dvrSLow, s_high=settings.dvrSHigh,
                             size=settings.dvrSize)
            self.started("Training started...")

        self.ui.trainingStatusLabel.text = "Sending the captures to the model server..."
        self.withServer(start, "Starting the training")

    def onResume(self) -> None:
        def resume(client) -> None:
            self.logic.resume(client, self.parameters.dvrRunPath)
            self.started("Resuming...")

        self.withServer(resume, "Resuming the training")

    def started(self, message: str) -> None:
        self.ui.trainingProgressBar.value = 0
        self.ui.trainingStatusLabel.text = message
        self.updateButtons()

    def onStop(self) -> None:
        self.logic.stop()
        self.ui.trainingStatusLabel.text = "Stopping..."

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
        volume_node = self.parameters.dvrVolume if self.parameters else None
        if volume_node is None:
            slicer.util.errorDisplay("Select the volume to show with the learned transfer function.")
            return
        with slicer.util.tryWithErrorDisplay("Could not apply the learned transfer function.", waitCursor=True):
            self.logic.apply_learned_tf(volume_node, self.parameters.dvrRunPath, method="gpu",
                                        volume_rendering_logic=slicer.modules.volumerendering.logic())

    def onRenderView(self) -> None:
        from vfmlab.render.poses import record_from_camera

        view = slicer.app.layoutManager().threeDWidget(0).threeDView()
        window = view.renderWindow()
        width, height = window.GetSize()
        camera = window.GetRenderers().GetFirstRenderer().GetActiveCamera()
        record = record_from_camera(camera, width, height, "view.png")
        settings = self.parameters
        self.withServer(lambda client: self.logic.render_view(
            client, record, height, settings.dvrRunPath, settings.dvrVolume, on_node=self.showRenderedView,
            on_failed=lambda reason: slicer.util.errorDisplay(f"Could not render the view.\n\n{reason}")),
            "Rendering the view with the trained model")

    def showRenderedView(self, node) -> None:
        """Only in the Red view, over whatever else it showed: the other views keep the user's layers."""
        from VFMVolumeLabLib.views import show_in_slice_view

        show_in_slice_view(slicer.app.layoutManager(), "Red", background=node)
