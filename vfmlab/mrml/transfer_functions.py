"""DeepDVR results into Slicer: learned transfer functions on volume rendering display nodes, ``.vp``
files, re-renders through Slicer's own volume rendering, and where its CPU ray caster samples.

A :class:`vfmlab.dvr.transfer_functions.PiecewiseTF` is applied through
:func:`vfmlab.mrml.volume_rendering.apply_transfer_function` (colour and scalar opacity points, the
scalar opacity unit distance, linear interpolation, no shading), so Slicer's ray casters composite
what the DeepDVR marcher composited (see :mod:`vfmlab.dvr.marcher`).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import slicer
import vtk

from ..cameras import CameraRecord
from ..dvr.piecewise_tf import PiecewiseTF
from ..errors import InputError
from ..volume import Volume
from . import volume_rendering as vr
from .scene import attached_storage_node, read_with_storage_node, write_with_storage_node

SLICER_UNIT_DISTANCE = 1.0  # mm: VTK's default scalar opacity unit distance, the one Slicer's files imply


def volume_property(tf: PiecewiseTF) -> vtk.vtkVolumeProperty:
    """A new ``vtkVolumeProperty`` holding ``tf`` (no shading, linear interpolation)."""
    prop = vtk.vtkVolumeProperty()
    vr.apply_transfer_function(prop, tf.to_dict())
    return prop


def tf_from_volume_property(prop: vtk.vtkVolumeProperty) -> PiecewiseTF:
    """The colour and scalar opacity points of a ``vtkVolumeProperty`` (midpoints/sharpness ignored)."""
    def points(function, width: int, keep: int) -> np.ndarray:
        values = []
        for index in range(function.GetSize()):
            node = [0.0] * width
            function.GetNodeValue(index, node)
            values.append(node[:keep])
        return np.array(values)

    return PiecewiseTF(points(prop.GetRGBTransferFunction(), 6, 4), points(prop.GetScalarOpacity(), 4, 2),
                       prop.GetScalarOpacityUnitDistance())


def slicer_tf(tf: PiecewiseTF) -> PiecewiseTF:
    """``tf`` with opacities per 1 mm, VTK's default unit distance.

    Neither ``.vp`` files nor ``.mrml`` scenes store a volume property's scalar opacity unit distance,
    so a TF handed to Slicer must mean the same at 1 mm to survive saving and reloading.
    """
    return tf.at_unit_distance(SLICER_UNIT_DISTANCE)


def add_volume_property_node(scene, tf: PiecewiseTF, name: str = "DeepDVR learned TF"):
    """A new ``vtkMRMLVolumePropertyNode`` in ``scene`` holding ``tf`` (as :func:`slicer_tf`)."""
    node = slicer.vtkMRMLVolumePropertyNode()
    node.SetName(scene.GenerateUniqueName(name))
    scene.AddNode(node)
    vr.apply_transfer_function(node.GetVolumeProperty(), slicer_tf(tf).to_dict())
    node.CalculateEffectiveRange()
    return node


def save_volume_property_node(node, path: str | Path) -> Path:
    """Write a Slicer ``.vp`` file through ``vtkMRMLVolumePropertyStorageNode`` (kept attached to the node)."""
    storage = attached_storage_node(node, "vtkMRMLVolumePropertyStorageNode")
    return write_with_storage_node(node, storage, path)


def load_volume_property_node(scene, path: str | Path):
    """Read a ``.vp`` file into a new volume property node."""
    path = Path(path)
    if not path.is_file():
        raise InputError("does not exist", path)
    check_vp_file(path)
    node = slicer.vtkMRMLVolumePropertyNode()
    node.SetName(scene.GenerateUniqueName(path.stem))
    read_with_storage_node(scene, node, slicer.vtkMRMLVolumePropertyStorageNode(), path,
                           "is not a readable Slicer volume property (.vp) file")
    return node


def check_vp_file(path: Path) -> None:
    """Refuse a file that is not in Slicer's ``.vp`` layout.

    Slicer's reader accepts any text and leaves default functions in the node, so a wrong file would
    pass for a transfer function. The layout: lines of numbers, and among them the scalar opacity,
    gradient opacity and colour functions, each ``N v1 ... vN``.
    """
    problem = "is not a Slicer volume property (.vp) file: expected lines of numbers with 'N v1 ... vN' functions"
    try:
        rows = [[float(token) for token in line.split()] for line in path.read_text().splitlines() if line.strip()]
    except (UnicodeDecodeError, ValueError):
        raise InputError(problem, path) from None
    functions = [row for row in rows if len(row) > 1 and row[0] == len(row) - 1]
    if len(functions) < 3:
        raise InputError(problem, path)


def write_vp_file(tf: PiecewiseTF, path: str | Path) -> Path:
    """``tf`` as a Slicer ``.vp`` file, written by Slicer's own storage node in a scratch scene."""
    scene = slicer.vtkMRMLScene()
    try:
        return save_volume_property_node(add_volume_property_node(scene, tf), path)
    finally:
        scene.Clear(1)


def apply_to_volume_rendering(volume_node, tf: PiecewiseTF, method: str = "cpu", name: str = "DeepDVR learned TF",
                              logic=None):
    """Show ``volume_node`` with ``tf`` in Slicer's volume rendering; returns the display node.

    A volume rendering display node the volume already has is reused (its volume property gets
    ``tf``, its ray casting method is kept); otherwise one of ``method`` ("cpu"/"gpu") is created
    through ``logic`` (the application's volume rendering logic; a headless one when None).
    """
    scene = volume_node.GetScene()
    if scene is None:
        raise InputError(f"volume node '{volume_node.GetName()}' is not in a scene")
    display = next((volume_node.GetNthDisplayNode(i) for i in range(volume_node.GetNumberOfDisplayNodes())
                    if volume_node.GetNthDisplayNode(i) is not None
                    and volume_node.GetNthDisplayNode(i).IsA("vtkMRMLVolumeRenderingDisplayNode")), None)
    if display is not None:
        method = "gpu" if display.IsA("vtkMRMLGPURayCastVolumeRenderingDisplayNode") else "cpu"
    own_logic = logic is None
    logic = logic or vr.volume_rendering_logic(scene)
    try:
        display = vr.show_volume(logic, volume_node, method, transfer_function=slicer_tf(tf).to_dict())
    finally:
        if own_logic:
            logic.SetMRMLScene(None)
    display.GetVolumePropertyNode().SetName(scene.GenerateUniqueName(name))
    return display


def render_views(volume: Volume, tf: PiecewiseTF, views: Sequence[CameraRecord], background=(0.0, 0.0, 0.0),
                 method: str = "cpu") -> list[np.ndarray]:
    """Render ``views`` of ``volume`` with ``tf`` through Slicer's volume rendering (headless view,
    ``method`` ray casting, the display node's own sample distance); ``(H, W, 3)`` floats in [0, 1]."""
    from .scene import new_scene
    from .volumes import add_volume_node

    scene = new_scene()
    try:
        node = add_volume_node(scene, volume, name="DeepDVR re-render")
        apply_to_volume_rendering(node, tf, method)
        by_size: dict[tuple[int, int], list[int]] = {}
        for index, view in enumerate(views):
            by_size.setdefault((view.width, view.height), []).append(index)
        rendered: dict[int, np.ndarray] = {}
        for (width, height), indices in by_size.items():
            with vr.HeadlessThreeDView(scene, width, height, background) as view3d:
                for index in indices:
                    rendered[index] = view3d.render(views[index]).astype(np.float32) / 255.0
        return [rendered[i] for i in range(len(views))]
    finally:
        scene.Clear(1)


def cpu_ray_lattice(volume: Volume, views: Sequence[CameraRecord], transfer_function: dict) -> tuple[float, list[float]]:
    """Where Slicer's CPU ray casting (a headless capture) puts its samples along each view's rays.

    ``vtkFixedPointVolumeRayCastMapper`` samples every ray at whole steps of its sample distance from
    the camera's near clipping plane; at "Normal" quality that distance is derived from the voxel
    spacing (and can differ from the display node's). Returns ``(sample distance in mm, near plane
    distance per view)``, read from the same pipeline a capture uses: the display node, the
    displayable manager's mapper after one render, and the camera's reset clipping range.
    """
    from ..render.poses import apply_camera_record
    from .scene import new_scene
    from .volumes import add_volume_node

    scene = new_scene()
    try:
        node = add_volume_node(scene, volume, name="DeepDVR ray lattice")
        logic = vr.volume_rendering_logic(scene)
        try:
            vr.show_volume(logic, node, "cpu", transfer_function=transfer_function)
            first = views[0]
            with vr.HeadlessThreeDView(scene, first.width, first.height) as view3d:
                view3d.render(first)  # the mapper settles its sample distance when it first renders
                sample_distance = float(view3d.manager.GetVolumeMapper(node).GetSampleDistance())
                camera = view3d.renderer.GetActiveCamera()
                near = []
                for view in views:
                    apply_camera_record(camera, view)
                    view3d.renderer.ResetCameraClippingRange()
                    near.append(float(camera.GetClippingRange()[0]))
        finally:
            logic.SetMRMLScene(None)
        return sample_distance, near
    finally:
        scene.Clear(1)
