"""Volume rendering through Slicer's own logic, display nodes and displayable manager — headless or in the app.

The transfer function lives on a ``vtkMRMLVolumePropertyNode`` of a volume rendering display node
(CPU or GPU ray cast), exactly as in Slicer's Volume Rendering module. What draws it is Slicer's
``vtkMRMLVolumeRenderingDisplayableManager``: inside the application the one of the app's 3D view,
headless the one :class:`HeadlessThreeDView` sets up on an off-screen (EGL) render window. Both read the
same display node and volume property, so a capture looks the same either way.

Segment IDs are rendered the same way: a label volume with nearest interpolation, opacity 1 for every
label and a piecewise-constant colour that codes the label value (:func:`label_id_color`), decoded back
per pixel by :func:`decode_label_ids`.
"""
from __future__ import annotations

import numpy as np
import slicer
import vtk

from ..errors import InputError
from ..render.presets import presets_dir
from .three_d_view import HeadlessThreeDView, RenderWindowView, add_image_node, grab_image, render_view

__all__ = [
    "METHODS", "HeadlessThreeDView", "RenderWindowView", "add_image_node", "apply_transfer_function",
    "decode_label_ids", "display_node_of", "grab_image", "label_id_color", "preset_node", "remove_volume_node",
    "remove_volume_renderings", "render_view",
    "shift_transfer_function", "show_label_ids", "show_volume", "transfer_function_record", "volume_rendering_logic",
]

METHODS = {
    "cpu": "vtkMRMLCPURayCastVolumeRenderingDisplayNode",
    "gpu": "vtkMRMLGPURayCastVolumeRenderingDisplayNode",
}
INTERPOLATIONS = {"nearest": 0, "linear": 1}
# vtkColorTransferFunction's colour spaces
_COLOR_SPACES = {0: "rgb", 1: "hsv", 2: "lab", 3: "diverging", 4: "lab_ciede2000", 5: "step"}
# Label colours step by 16 per channel around the centre of each step: a renderer that blends or
# rounds a channel by up to 7 levels still decodes to the same label (three hex digits, IDs < 4096).
_ID_STEP, _ID_OFFSET, MAX_LABEL_ID = 16, 8, 4095


def volume_rendering_logic(scene):
    """A volume rendering logic on ``scene`` that reads the presets shipped in ``Resources/VolumeRendering``.

    The logic loads ``presets.xml`` from its module share directory; the Slicer application sets that to
    its own copy, a headless logic gets the shipped copy of the same file.
    """
    logic = slicer.vtkSlicerVolumeRenderingLogic()
    logic.SetModuleShareDirectory(str(presets_dir()))
    logic.SetMRMLScene(scene)
    return logic


def preset_node(logic, name: str):
    """The preset's ``vtkMRMLVolumePropertyNode`` from the logic's presets scene."""
    node = logic.GetPresetByName(name)
    if node is None:
        presets = logic.GetPresetsScene()
        names = [presets.GetNthNodeByClass(i, "vtkMRMLVolumePropertyNode").GetName()
                 for i in range(presets.GetNumberOfNodesByClass("vtkMRMLVolumePropertyNode"))]
        raise InputError(f"unknown volume rendering preset '{name}'; presets: {', '.join(names)}")
    return node


def display_node_of(logic, volume_node, method: str, view_node=None):
    """``volume_node``'s volume rendering display node of ``method`` ("cpu"/"gpu"), made when it has none."""
    if method not in METHODS:
        raise InputError(f"ray casting must be one of {sorted(METHODS)}, got '{method}'")
    class_name = METHODS[method]
    for index in range(volume_node.GetNumberOfDisplayNodes()):
        node = volume_node.GetNthDisplayNode(index)
        if node is not None and node.IsA(class_name):
            return node
    display = logic.CreateVolumeRenderingDisplayNode(class_name)  # not yet in the scene
    volume_node.GetScene().AddNode(display)
    volume_node.AddAndObserveDisplayNodeID(display.GetID())
    logic.UpdateDisplayNodeFromVolumeNode(display, volume_node)  # creates the volume property node
    if view_node is not None:  # otherwise it shows in every 3D view, as Slicer's own display nodes do
        display.AddViewNodeID(view_node.GetID())
    return display


def show_volume(logic, volume_node, method: str = "cpu", preset: str | None = None, shift: float = 0.0,
                shading: bool | None = None, transfer_function: dict | None = None, view_node=None):
    """Show ``volume_node`` with a volume rendering display node of ``method`` ("cpu"/"gpu"); returns it.

    The volume property gets ``preset`` (a Slicer preset name) or ``transfer_function`` (a record as
    :func:`transfer_function_record` writes it); with neither, the node keeps its current property (the
    user's own TF in the app). ``shift`` moves the colour and scalar-opacity points along the scalar axis,
    as Slicer's "Shift" slider does; ``shading`` None keeps the preset's own setting. Other volume
    rendering display nodes of the volume are hidden so that exactly one rendering shows.
    """
    display = display_node_of(logic, volume_node, method, view_node)
    property_node = display.GetVolumePropertyNode()
    if preset is not None:
        property_node.Copy(preset_node(logic, preset))
    elif transfer_function is not None:
        apply_transfer_function(property_node.GetVolumeProperty(), transfer_function)
    if shift:
        shift_transfer_function(property_node.GetVolumeProperty(), shift)
    if shading is not None:
        property_node.GetVolumeProperty().SetShade(int(bool(shading)))
    property_node.CalculateEffectiveRange()
    for index in range(volume_node.GetNumberOfDisplayNodes()):
        other = volume_node.GetNthDisplayNode(index)
        if other is not None and other.IsA("vtkMRMLVolumeRenderingDisplayNode") and other is not display:
            other.SetVisibility(False)
    display.SetVisibility(True)
    return display


def shift_transfer_function(volume_property, shift: float) -> None:
    """Move every colour and scalar-opacity point by ``shift`` (gradient opacity is not a function of the scalar)."""
    colors = volume_property.GetRGBTransferFunction()
    opacity = volume_property.GetScalarOpacity()
    color_nodes = [_node_values(colors, i, 6) for i in range(colors.GetSize())]
    opacity_nodes = [_node_values(opacity, i, 4) for i in range(opacity.GetSize())]
    colors.RemoveAllPoints()
    for x, r, g, b, midpoint, sharpness in color_nodes:
        colors.AddRGBPoint(x + shift, r, g, b, midpoint, sharpness)
    opacity.RemoveAllPoints()
    for x, a, midpoint, sharpness in opacity_nodes:
        opacity.AddPoint(x + shift, a, midpoint, sharpness)


def _node_values(function, index: int, width: int) -> list[float]:
    values = [0.0] * width
    function.GetNodeValue(index, values)
    return values


def transfer_function_record(display_node, preset: str | None = None, shift: float = 0.0) -> dict:
    """The TF a display node renders with, enough to re-cast every ray (colour/opacity points after the shift).

    Points: ``color`` ``[[x, r, g, b]]``, ``scalar_opacity`` ``[[x, alpha]]``, ``gradient_opacity``
    ``[[|grad|, alpha]]`` with VTK's midpoint/sharpness per point alongside. Opacity is per
    ``scalar_opacity_unit_distance`` mm, as VTK defines it. ``applied_shift`` is informative: the points
    already include it.
    """
    volume_property = display_node.GetVolumePropertyNode().GetVolumeProperty()
    colors = volume_property.GetRGBTransferFunction()
    opacity = volume_property.GetScalarOpacity()
    gradient = volume_property.GetGradientOpacity()
    color_nodes = np.array([_node_values(colors, i, 6) for i in range(colors.GetSize())]).reshape(-1, 6)
    opacity_nodes = np.array([_node_values(opacity, i, 4) for i in range(opacity.GetSize())]).reshape(-1, 4)
    gradient_nodes = np.array([_node_values(gradient, i, 4) for i in range(gradient.GetSize())]).reshape(-1, 4)
    interpolation = {v: k for k, v in INTERPOLATIONS.items()}.get(volume_property.GetInterpolationType(), "linear")
    return {
        "preset": preset,
        "applied_shift": float(shift),
        "color": color_nodes[:, :4].tolist(),
        "color_midpoint_sharpness": color_nodes[:, 4:].tolist(),
        "color_space": _COLOR_SPACES.get(colors.GetColorSpace(), str(colors.GetColorSpace())),
        "clamping": bool(colors.GetClamping()),
        "scalar_opacity": opacity_nodes[:, :2].tolist(),
        "scalar_opacity_midpoint_sharpness": opacity_nodes[:, 2:].tolist(),
        "scalar_opacity_unit_distance": float(volume_property.GetScalarOpacityUnitDistance()),
        "gradient_opacity": gradient_nodes[:, :2].tolist(),
        "gradient_opacity_enabled": not bool(volume_property.GetDisableGradientOpacity()),
        "shading": bool(volume_property.GetShade()),
        "ambient": float(volume_property.GetAmbient()),
        "diffuse": float(volume_property.GetDiffuse()),
        "specular": float(volume_property.GetSpecular()),
        "specular_power": float(volume_property.GetSpecularPower()),
        "interpolation": interpolation,
        "blend_mode": "composite",
        "rendering_method": display_node.GetClassName(),
    }


def apply_transfer_function(volume_property, record: dict) -> None:
    """Set a ``vtkVolumeProperty`` from a record (points as :func:`transfer_function_record` writes them)."""
    try:
        color = np.asarray(record["color"], float).reshape(-1, 4)
        opacity = np.asarray(record["scalar_opacity"], float).reshape(-1, 2)
    except (KeyError, ValueError) as error:
        raise InputError(f"a transfer function needs 'color' [[x,r,g,b]] and 'scalar_opacity' [[x,a]] ({error})")
    colors, scalar_opacity = vtk.vtkColorTransferFunction(), vtk.vtkPiecewiseFunction()
    for point in color:
        colors.AddRGBPoint(*point)
    for point in opacity:
        scalar_opacity.AddPoint(*point)
    volume_property.SetColor(colors)
    volume_property.SetScalarOpacity(scalar_opacity)
    gradient_points = record.get("gradient_opacity") or []
    volume_property.SetDisableGradientOpacity(not record.get("gradient_opacity_enabled", bool(gradient_points)))
    if gradient_points:
        gradient = vtk.vtkPiecewiseFunction()
        for point in np.asarray(gradient_points, float).reshape(-1, 2):
            gradient.AddPoint(*point)
        volume_property.SetGradientOpacity(gradient)
    volume_property.SetShade(int(bool(record.get("shading", False))))
    volume_property.SetInterpolationType(INTERPOLATIONS[record.get("interpolation", "linear")])
    volume_property.SetScalarOpacityUnitDistance(float(record.get("scalar_opacity_unit_distance", 1.0)))
    for key in ("ambient", "diffuse", "specular", "specular_power"):
        if key in record:
            getattr(volume_property, "Set" + key.title().replace("_", ""))(float(record[key]))


def label_id_color(value: int) -> tuple[float, float, float]:
    """RGB in [0, 1] that codes label ``value`` (1..4095): one hex digit per channel, centred in its step."""
    value = int(value)
    if not 0 < value <= MAX_LABEL_ID:
        raise InputError(f"segment label values must be 1..{MAX_LABEL_ID} to be rendered as IDs, got {value}")
    digits = (value & 15, (value >> 4) & 15, (value >> 8) & 15)
    return tuple((d * _ID_STEP + _ID_OFFSET) / 255.0 for d in digits)


def decode_label_ids(rgb: np.ndarray, valid: set[int] | None = None) -> np.ndarray:
    """Label values ``(H, W)`` uint16 of a render coded with :func:`label_id_color`; 0 where nothing was hit.

    Black is background; a colour that is no code (a blend at an edge) or codes a value not in
    ``valid`` decodes to 0 rather than to a wrong segment.
    """
    rgb = np.asarray(rgb)[..., :3].astype(np.int32)
    digits = np.rint((rgb - _ID_OFFSET) / _ID_STEP).clip(0, 15).astype(np.int32)
    exact = np.abs(rgb - (digits * _ID_STEP + _ID_OFFSET)).max(axis=-1) <= _ID_STEP // 2 - 1
    ids = digits[..., 0] + (digits[..., 1] << 4) + (digits[..., 2] << 8)
    ids[~exact | (rgb.max(axis=-1) == 0)] = 0
    if valid is not None:
        ids[~np.isin(ids, list(valid))] = 0
    return ids.astype(np.uint16)


def show_label_ids(logic, label_node, values: list[int], view_node):
    """Render ``label_node`` as segment IDs in ``view_node`` only; returns the (GPU) display node.

    Nearest interpolation, opacity 1 for each label, no shading, colours constant over
    ``[v - 0.49, v + 0.49]`` so no lookup-table interpolation can mix two labels. GPU ray casting,
    because the CPU ray caster draws its image as a filtered texture and blends colours at label
    edges (measured: one-pixel seams of mixed codes), which the GPU path does not.
    """
    display = display_node_of(logic, label_node, "gpu", view_node)
    volume_property = display.GetVolumePropertyNode().GetVolumeProperty()
    colors, opacity = vtk.vtkColorTransferFunction(), vtk.vtkPiecewiseFunction()
    opacity.AddPoint(0.0, 0.0)
    for value in sorted(int(v) for v in values if v):
        rgb = label_id_color(value)
        colors.AddRGBPoint(value - 0.49, *rgb)
        colors.AddRGBPoint(value + 0.49, *rgb)
        opacity.AddPoint(value - 0.49, 1.0)
        opacity.AddPoint(value + 0.49, 1.0)
    volume_property.SetColor(colors)
    volume_property.SetScalarOpacity(opacity)
    volume_property.SetInterpolationTypeToNearest()
    volume_property.ShadeOff()
    volume_property.DisableGradientOpacityOn()
    display.SetVisibility(True)
    return display


def remove_volume_renderings(volume_node) -> None:
    """Remove the volume's volume rendering display nodes with their volume property and ROI nodes."""
    scene = volume_node.GetScene()
    displays = [volume_node.GetNthDisplayNode(i) for i in range(volume_node.GetNumberOfDisplayNodes())]
    for display in displays:
        if scene is None or display is None or not display.IsA("vtkMRMLVolumeRenderingDisplayNode"):
            continue
        for owned in (display.GetVolumePropertyNode(), display.GetROINode()):
            if owned is not None:
                scene.RemoveNode(owned)
        scene.RemoveNode(display)


def remove_volume_node(node) -> None:
    """Remove a scratch volume node (rendered segment IDs) with all its display nodes and volume renderings."""
    scene = node.GetScene()
    if scene is None:
        return
    remove_volume_renderings(node)
    for display in [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())]:
        if display is not None:
            scene.RemoveNode(display)
    scene.RemoveNode(node)
