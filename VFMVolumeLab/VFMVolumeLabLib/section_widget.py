"""The base of every panel section of both modules (probe, DeepDVR, prompt segmentation, BT-VAE).

A section loads its ``.ui`` file into the module panel, binds its settings widgets (those with a
``SlicerParameterName`` property) to the module's parameter node through its ``@parameterNodeWrapper``
class, so they are saved with the scene; reaches the model server through the shared link without
blocking (:meth:`Section.withServer`); observes MRML events it lets go of in :meth:`Section.cleanup`;
and owns one logic object (a :class:`section_logic.SectionLogic`), which owns the jobs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import qt
import slicer


class Section:
    UI_FILE: Path
    PARAMETERS: Optional[type] = None  # a @parameterNodeWrapper class over the module's parameter node
    PARAMETER_PREFIX: str = ""  # keeps the section's parameters apart from the others' in the shared node

    def __init__(self, parent_layout, scene=None, link=None) -> None:
        import VFMVolumeLabLib

        VFMVolumeLabLib.ensure_vfmlab_importable()
        from VFMVolumeLabLib.server_link import ClientWaiter, shared_link

        self.scene = scene or slicer.mrmlScene
        self.widget = slicer.util.loadUI(str(self.UI_FILE))
        parent_layout.addWidget(self.widget)
        self.ui = slicer.util.childWidgetVariables(self.widget)
        self.widget.setMRMLScene(self.scene)
        self.link = link or shared_link()
        self.waiter = ClientWaiter(self.link, qt.QTimer())
        self.observations: list[tuple[Any, int]] = []
        self.parameters = None
        self._guiTag = None
        self.logic = self.createLogic()

    def createLogic(self):
        raise NotImplementedError

    # -- parameter node ---------------------------------------------------------------------------
    def setParameterNode(self, node) -> None:
        """Bind the settings widgets to ``node`` (the module's ``vtkMRMLScriptedModuleNode``), or unbind (None)."""
        if self.parameters is not None and self._guiTag is not None:
            self.parameters.disconnectGui(self._guiTag)
        self.parameters, self._guiTag = None, None
        if node is not None and self.PARAMETERS is not None:
            self.parameters = self.PARAMETERS(node, prefix=self.PARAMETER_PREFIX or None)
            self._guiTag = self.parameters.connectGui(self.ui)

    # -- model server -----------------------------------------------------------------------------
    def withServer(self, onReady: Callable[[Any], Any], what: str) -> None:
        """Call ``onReady(client)`` once the model server answers (a local one may take seconds to start);
        errors of ``onReady`` and a server that cannot start are shown as "``what``" failures."""

        def ready(client) -> None:
            with slicer.util.tryWithErrorDisplay(f"{what} failed.", waitCursor=True):
                onReady(client)

        self.waiter.request(ready, lambda message: self.onServerFailed(message, what))

    def onServerFailed(self, message: str, what: str) -> None:
        slicer.util.errorDisplay(f"{what} failed: the model server is not available.\n\n{message}")

    # -- observations and cleanup -----------------------------------------------------------------
    def observe(self, caller, event, callback) -> int:
        tag = caller.AddObserver(event, lambda *_: callback())
        self.observations.append((caller, tag))
        return tag

    def cleanup(self) -> None:
        """Stop waiting and observing, unbind the settings, stop following jobs (server jobs go on)."""
        self.waiter.cancel()
        for caller, tag in self.observations:
            caller.RemoveObserver(tag)
        self.observations.clear()
        self.setParameterNode(None)
        self.logic.cleanup()
