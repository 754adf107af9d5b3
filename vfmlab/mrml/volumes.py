"""Volume nodes ⇄ :class:`vfmlab.volume.Volume`, geometry exact (the node's IJK→RAS matrix is kept)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from ..errors import InputError
from ..volume_io import check_finite, check_volume_file
from ..volume import Volume
from .scene import attached_storage_node, read_with_storage_node, write_with_storage_node


def matrix_to_numpy(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def numpy_to_matrix(array: np.ndarray) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def image_data_from_array(array: np.ndarray, image=None):
    """Copy a ``(K, J, I)`` array, or ``(K, J, I, C)`` for C components per voxel, into a ``vtkImageData``
    (or a subclass given as ``image``).

    Spacing and origin stay at identity: Slicer keeps geometry on the node, not on the image data.
    """
    array = np.ascontiguousarray(array)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    image = image if image is not None else vtk.vtkImageData()
    k, j, i = array.shape[:3]
    components = array.shape[3] if array.ndim == 4 else 1
    image.SetDimensions(i, j, k)
    image.SetSpacing(1.0, 1.0, 1.0)
    image.SetOrigin(0.0, 0.0, 0.0)
    scalars = numpy_support.numpy_to_vtk(array.reshape(-1, components), deep=True)
    scalars.SetName("ImageScalars")
    image.GetPointData().SetScalars(scalars)
    return image


def array_from_image_data(image) -> np.ndarray:
    """A ``(K, J, I)`` copy of a single-component ``vtkImageData``'s voxels."""
    scalars = image.GetPointData().GetScalars()
    if scalars is None:
        raise InputError("the volume node has no voxel data")
    if scalars.GetNumberOfComponents() != 1:
        raise InputError(
            f"the volume has {scalars.GetNumberOfComponents()} components per voxel; a scalar volume is needed"
        )
    i, j, k = image.GetDimensions()
    return numpy_support.vtk_to_numpy(scalars).reshape(k, j, i).copy()


def node_ijk_to_world(node) -> np.ndarray:
    """IJK→RAS of a volume node in world coordinates, including a linear parent transform."""
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    ijk_to_ras = matrix_to_numpy(matrix)
    transform = node.GetParentTransformNode()
    if transform is None:
        return ijk_to_ras
    if not transform.IsTransformToWorldLinear():
        raise InputError(
            f"volume '{node.GetName()}' is under a non-linear transform; harden the transform first"
        )
    to_world = vtk.vtkMatrix4x4()
    transform.GetMatrixTransformToWorld(to_world)
    return matrix_to_numpy(to_world) @ ijk_to_ras


def volume_from_node(node) -> Volume:
    """A :class:`Volume` with the node's voxels and world geometry (parent transforms applied)."""
    image = node.GetImageData()
    if image is None:
        raise InputError(f"volume node '{node.GetName()}' has no image data")
    return Volume.from_ijk_to_ras(array_from_image_data(image), node_ijk_to_world(node), name=node.GetName())


def volume_geometry(node) -> Volume:
    """The node's grid and world geometry without reading its voxels (the array is one zero broadcast to
    the grid's shape, taking no memory): for positions only, e.g. moving a slice view onto a slice."""
    image = node.GetImageData()
    if image is None:
        raise InputError(f"volume node '{node.GetName()}' has no image data")
    i, j, k = image.GetDimensions()
    return Volume.from_ijk_to_ras(np.broadcast_to(np.zeros((), np.float32), (k, j, i)), node_ijk_to_world(node),
                                  name=node.GetName())


def update_volume_node(node, volume: Volume) -> None:
    """Replace a node's voxels and geometry with ``volume``'s."""
    node.SetIJKToRASMatrix(numpy_to_matrix(volume.ijk_to_ras))
    node.SetAndObserveImageData(image_data_from_array(volume.array))


def add_volume_node(scene, volume: Volume, name: str | None = None, labelmap: bool = False):
    """Add a scalar (or labelmap) volume node holding ``volume``; returns the node."""
    node = slicer.vtkMRMLLabelMapVolumeNode() if labelmap else slicer.vtkMRMLScalarVolumeNode()
    node.SetName(scene.GenerateUniqueName(name or volume.name))
    scene.AddNode(node)
    update_volume_node(node, volume)
    node.CreateDefaultDisplayNodes()
    return node


def load_volume_node(scene, path: str | Path, name: str | None = None, labelmap: bool = False):
    """Read a volume file through Slicer's archetype storage node, as Slicer's "Add data" does.

    The header is checked first (2D, 4D, vector, size), the voxels after (NaN). On failure the scene is left as it was and an :class:`InputError` names the file.
    """
    path = Path(path)
    check_volume_file(path)
    node = slicer.vtkMRMLLabelMapVolumeNode() if labelmap else slicer.vtkMRMLScalarVolumeNode()
    node.SetName(scene.GenerateUniqueName(name or path.name.split(".")[0]))

    def check_voxels(node) -> None:
        if node.GetImageData() is None:
            raise InputError("could not be read by Slicer's volume reader", path)
        check_finite(array_from_image_data(node.GetImageData()), path)

    read_with_storage_node(scene, node, slicer.vtkMRMLVolumeArchetypeStorageNode(), path,
                           "could not be read by Slicer's volume reader", check_voxels)
    node.CreateDefaultDisplayNodes()
    return node


def save_volume_node(node, path: str | Path) -> Path:
    """Write a volume node with a storage node that stays attached, so a saved scene refers to the file."""
    return write_with_storage_node(node, attached_storage_node(node), path)
