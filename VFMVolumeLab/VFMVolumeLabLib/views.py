"""Results go into one slice view, the one the user works in, and change nothing else.

``slicer.util.setSliceViewerLayers`` sets the layers of every slice view at once (and, with
``label=None``, clears the user's label layer); these helpers change one view's composite node only.
Plain Python: the layout manager is passed in (``slicer.app.layoutManager()`` in Slicer).
"""
from __future__ import annotations

from typing import Optional


def working_view(layout_manager, volume_node=None, default: str = "Red") -> str:
    """The first slice view showing ``volume_node`` as its background, else ``default``."""
    if volume_node is not None:
        for name in layout_manager.sliceViewNames():
            composite = layout_manager.sliceWidget(name).mrmlSliceCompositeNode()
            if composite.GetBackgroundVolumeID() == volume_node.GetID():
                return name
    return default


def show_in_slice_view(layout_manager, view_name: str, background=None, foreground=None,
                       foreground_opacity: Optional[float] = None, fit: bool = True) -> None:
    """Put ``background`` / ``foreground`` (nodes; None keeps the layer) into one slice view; the label
    layer and the other views stay as the user left them."""
    widget = layout_manager.sliceWidget(view_name)
    composite = widget.mrmlSliceCompositeNode()
    if background is not None:
        composite.SetBackgroundVolumeID(background.GetID())
    if foreground is not None:
        composite.SetForegroundVolumeID(foreground.GetID())
    if foreground_opacity is not None:
        composite.SetForegroundOpacity(float(foreground_opacity))
    if fit:
        widget.sliceLogic().FitSliceToAll()
