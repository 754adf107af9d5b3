"""Colourised volume rendering: an RGBA vector volume drawn by Slicer's volume rendering with its colours taken
from the volume itself (the way Slicer renders a colourised volume), not from a transfer function.

The first three components are the voxel's colour; the fourth passes through the scalar-opacity function
(an identity ramp on 0..255 here), which VTK does when the volume property's components are not independent.
"""
from __future__ import annotations

import numpy as np
import vtk

from ..errors import InputError
from ..volume import Volume
from .volume_rendering import display_node_of
from .volumes import image_data_from_array, numpy_to_matrix


def add_rgba_volume_node(scene, volume: Volume, rgba: np.ndarray, name: str = "colourised"):
    """A ``vtkMRMLVectorVolumeNode`` of ``rgba`` ``(K, J, I, 4)`` uint8 on ``volume``'s grid."""
    if rgba.shape != volume.array.shape + (4,) or rgba.dtype != np.uint8:
        raise InputError(f"an RGBA volume is (K, J, I, 4) uint8 on the volume's grid {volume.array.shape}; "
                         f"got {rgba.shape} {rgba.dtype}")
    node = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", scene.GenerateUniqueName(name))
    node.SetAndObserveImageData(image_data_from_array(rgba))
    node.SetIJKToRASMatrix(numpy_to_matrix(volume.ijk_to_ras))
    return node


def show_rgba_volume(logic, rgba_node, method: str = "cpu", max_opacity: float = 1.0):
    """Show ``rgba_node`` with its own colours (components not independent), alpha 0..255 mapped linearly to
    opacity 0..``max_opacity``, no shading; returns the display node."""
    display = display_node_of(logic, rgba_node, method)
    volume_property = display.GetVolumePropertyNode().GetVolumeProperty()
    volume_property.SetIndependentComponents(False)
    opacity = vtk.vtkPiecewiseFunction()
    opacity.AddPoint(0.0, 0.0)
    opacity.AddPoint(255.0, float(max_opacity))
    volume_property.SetScalarOpacity(opacity)
    volume_property.ShadeOff()
    volume_property.SetInterpolationTypeToLinear()
    display.SetVisibility(True)
    return display

