"""3D views that capture what Slicer's volume rendering displayable manager draws, as images.

:class:`HeadlessThreeDView` has its own view node, an off-screen (EGL) window and Slicer's
``vtkMRMLVolumeRenderingDisplayableManager``; :class:`RenderWindowView` captures through a view that
already exists (the Slicer application's 3D view). Both render a :class:`CameraRecord` and return the
frame as pixels, top row first.
"""
from __future__ import annotations

import importlib
import importlib.util
import os

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from ..cameras import CameraRecord
from ..errors import InputError
from ..render.poses import apply_camera_record


def _load_triton_first() -> None:
    """Import triton (when installed) before this process's first OpenGL context.

    Mesa's software OpenGL (llvmpipe) loads the system's LLVM; triton, which ``torch`` imports on demand
    (e.g. through timm and torchvision), bundles another LLVM, and loading it after Mesa's crashes the
    process (segfault in ``libtriton``, measured here). The other order works. Only headless processes
    that render and then run models need this; a process that already has a window must not start now.
    """
    if importlib.util.find_spec("triton") is not None:
        importlib.import_module("triton")


def _offscreen_window(width: int, height: int, first_context: bool):
    """An off-screen render window: EGL when it works (no display server needed), else VTK's default."""
    if first_context:
        _load_triton_first()
    window = None
    if not os.environ.get("VTK_DEFAULT_OPENGL_WINDOW"):
        try:
            from vtkmodules.vtkRenderingOpenGL2 import vtkEGLRenderWindow
        except ImportError:  # VTK built without EGL (e.g. inside the Slicer application)
            vtkEGLRenderWindow = None
        if vtkEGLRenderWindow is not None:
            window = vtkEGLRenderWindow()
            window.SetOffScreenRendering(1)
            if not window.SupportsOpenGL():
                window = None
    if window is None:
        window = vtk.vtkRenderWindow()
        window.SetOffScreenRendering(1)
    window.SetMultiSamples(0)  # anti-aliasing would blend label ID colours at edges
    window.SetSize(width, height)
    return window


def grab_image(render_window) -> np.ndarray:
    """The window's current frame as ``(H, W, 3)`` uint8, top row first (PNG order)."""
    grabber = vtk.vtkWindowToImageFilter()
    grabber.SetInput(render_window)
    grabber.SetInputBufferTypeToRGB()
    grabber.ReadFrontBufferOff()
    grabber.Update()
    image = grabber.GetOutput()
    width, height, _ = image.GetDimensions()
    pixels = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(height, width, -1)
    return np.ascontiguousarray(pixels[::-1, :, :3])


def render_view(render_window, renderer, record: CameraRecord) -> np.ndarray:
    """Point the renderer's camera as ``record`` says, render and grab; the camera is restored afterwards."""
    camera = renderer.GetActiveCamera()
    saved = vtk.vtkCamera()
    saved.DeepCopy(camera)
    try:
        apply_camera_record(camera, record)
        renderer.ResetCameraClippingRange()
        render_window.Render()
        return grab_image(render_window)
    finally:
        camera.DeepCopy(saved)


class HeadlessThreeDView:
    """A 3D view without the application: its own view node, off-screen window and Slicer's VR displayable manager.

    Renders what the scene's volume rendering display nodes show in this view node (every display node
    without a view restriction, plus those restricted to it).
    """

    def __init__(self, scene, width: int, height: int, background=(0.0, 0.0, 0.0), beside_app_views: bool = False):
        """``beside_app_views``: the process already shows OpenGL views (the Slicer application)."""
        self.scene = scene
        self.interaction_node = None
        if scene.GetFirstNodeByClass("vtkMRMLInteractionNode") is None:
            # Displayable managers look for it; the Slicer application adds one at start-up.
            self.interaction_node = slicer.vtkMRMLInteractionNode()
            self.interaction_node.SetSingletonTag("Singleton")
            scene.AddNode(self.interaction_node)
        self.view_node = slicer.vtkMRMLViewNode()
        self.view_node.SetName(scene.GenerateUniqueName("vfmlab capture view"))
        self.view_node.SetLayoutName(self.view_node.GetName())
        self.view_node.SetVolumeRenderingQuality(slicer.vtkMRMLViewNode.Normal)  # no frame-rate shortcuts
        self.view_node.SetHideFromEditors(True)
        self.view_node.SetMappedInLayout(False)  # inside the application: no view widget for it
        scene.AddNode(self.view_node)
        self.render_window = _offscreen_window(width, height, first_context=not beside_app_views)
        self.renderer = vtk.vtkRenderer()
        self.renderer.SetBackground(*background)
        self.render_window.AddRenderer(self.renderer)
        # Displayable managers reach the window through its interactor; a generic one needs no display.
        self.interactor = vtk.vtkGenericRenderWindowInteractor()
        self.interactor.SetRenderWindow(self.render_window)
        self.group = slicer.vtkMRMLDisplayableManagerGroup()
        self.group.SetRenderer(self.renderer)
        self.manager = slicer.vtkMRMLVolumeRenderingDisplayableManager()
        self.group.AddDisplayableManager(self.manager)
        self.group.SetMRMLDisplayableNode(self.view_node)
        self.manager.SetMRMLScene(scene)

    @property
    def size(self) -> tuple[int, int]:
        width, height = self.render_window.GetSize()
        return int(width), int(height)

    def render(self, record: CameraRecord) -> np.ndarray:
        """``(H, W, 3)`` uint8 of the view from ``record``'s camera (its size must be the window's)."""
        if (record.width, record.height) != self.size:
            raise InputError(f"camera record is {record.width}x{record.height} but the view is "
                             f"{self.size[0]}x{self.size[1]}")
        self.manager.UpdateFromMRML()
        return render_view(self.render_window, self.renderer, record)

    def close(self) -> None:
        """Detach from the scene, remove the nodes this view added and free the window."""
        self.manager.SetMRMLScene(None)
        self.group.SetMRMLDisplayableNode(None)
        self.render_window.Finalize()
        for node in (self.view_node, self.interaction_node):
            if node is not None and node.GetScene() is not None:
                self.scene.RemoveNode(node)

    def __enter__(self) -> "HeadlessThreeDView":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RenderWindowView:
    """Captures through an existing 3D view (the Slicer application's): its window, renderer and view node.

    While capturing, the view's box, axis labels and orientation marker are hidden and its background is
    made plain, so the capture shows the rendering only; everything is restored afterwards. Records must
    have the window's size (see :attr:`size`).
    """

    def __init__(self, render_window, renderer, view_node, background=(0.0, 0.0, 0.0)):
        self.render_window = render_window
        self.renderer = renderer
        self.view_node = view_node
        self.background = tuple(background)

    @property
    def size(self) -> tuple[int, int]:
        width, height = self.render_window.GetSize()
        return int(width), int(height)

    def current_record(self, image: str = "view_000.png") -> CameraRecord:
        """The record of what the view shows now (the user's current camera)."""
        from ..render.poses import record_from_camera

        return record_from_camera(self.renderer.GetActiveCamera(), *self.size, image)

    def render(self, record: CameraRecord) -> np.ndarray:
        if (record.width, record.height) != self.size:
            raise InputError(f"camera record is {record.width}x{record.height} but the 3D view is "
                             f"{self.size[0]}x{self.size[1]}")
        node = self.view_node
        saved = (node.GetBoxVisible(), node.GetAxisLabelsVisible(), node.GetOrientationMarkerType(),
                 node.GetBackgroundColor(), node.GetBackgroundColor2())
        try:
            node.SetBoxVisible(False)
            node.SetAxisLabelsVisible(False)
            node.SetOrientationMarkerType(slicer.vtkMRMLAbstractViewNode.OrientationMarkerTypeNone)
            node.SetBackgroundColor(*self.background)
            node.SetBackgroundColor2(*self.background)
            return render_view(self.render_window, self.renderer, record)
        finally:
            box, labels, marker, color, color2 = saved
            node.SetBoxVisible(box)
            node.SetAxisLabelsVisible(labels)
            node.SetOrientationMarkerType(marker)
            node.SetBackgroundColor(*color)
            node.SetBackgroundColor2(*color2)


def add_image_node(scene, rgb: np.ndarray, name: str):
    """A single-slice RGB vector volume (a capture or an attention grid) for a slice view.

    Oriented like an ITK image (columns towards patient left, rows towards posterior), so it appears
    upright and unmirrored in Slicer's axial (Red) view.
    """
    rgb = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)[None, ..., :3])
    image = vtk.vtkImageData()
    image.SetDimensions(rgb.shape[2], rgb.shape[1], 1)
    scalars = numpy_support.numpy_to_vtk(rgb.reshape(-1, 3), deep=True)
    scalars.SetName("ImageScalars")
    image.GetPointData().SetScalars(scalars)
    node = slicer.vtkMRMLVectorVolumeNode()
    node.SetName(scene.GenerateUniqueName(name))
    scene.AddNode(node)
    node.SetIJKToRASDirections(-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
    node.SetAndObserveImageData(image)
    node.CreateDefaultDisplayNodes()
    return node
