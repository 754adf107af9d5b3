"""SliceStack: the same anatomy gives the same slice image however the voxels are stored."""
from __future__ import annotations

import numpy as np
import pytest

from vfmlab.errors import InputError
from vfmlab.slices import AXES, SliceStack
from vfmlab.volume import Volume


def flipped_storage(volume: Volume, ijk_axis: int) -> Volume:
    """The same physical volume, stored with one index axis reversed."""
    array = np.flip(volume.array, axis=2 - ijk_axis).copy()
    direction = volume.direction.copy()
    direction[:, ijk_axis] *= -1
    last = [0, 0, 0]
    last[ijk_axis] = volume.shape_ijk[ijk_axis] - 1
    origin = volume.ijk_to_ras_points(last)[0]
    return Volume(array, volume.spacing, origin, direction)


def permuted_storage(volume: Volume) -> Volume:
    """The same physical volume stored with I and K swapped."""
    array = volume.array.transpose(2, 1, 0).copy()
    direction = volume.direction[:, [2, 1, 0]]
    spacing = volume.spacing[::-1]
    return Volume(array, spacing, volume.origin, direction)


@pytest.fixture
def volume() -> Volume:
    rng = np.random.default_rng(1)
    return Volume(rng.integers(0, 1000, (6, 7, 8)).astype(np.int16), (1.0, 2.0, 3.0), (5.0, 6.0, 7.0))


@pytest.mark.parametrize("axis", AXES)
def test_same_anatomy_same_slices(volume, axis):
    reference = SliceStack.of(volume, axis).view(volume.array)
    for other in (flipped_storage(volume, 0), flipped_storage(volume, 2), permuted_storage(volume)):
        np.testing.assert_array_equal(SliceStack.of(other, axis).view(other.array), reference)


def test_radiological_orientation_of_axial_slices():
    # voxel i grows towards R (identity direction): patient right must be on the image's left
    array = np.zeros((3, 4, 5), np.int16)
    array[:, :, 4] = 1  # most right column of voxels
    array[:, 3, :] = 2  # most anterior row
    stack = SliceStack.of(Volume(array), "axial")
    image = stack.view(array)[1]
    assert (image[:, 0][1:] == 1).all(), "patient right is not on the left"
    assert (image[0, :] == 2).all(), "anterior is not at the top"
    assert stack.pixel_spacing == (1.0, 1.0)


def test_index_mappings_are_inverse_and_views_write_through(volume):
    for axis in AXES:
        stack = SliceStack.of(flipped_storage(volume, 1), axis)
        kji = np.array([[1, 2, 3], [5, 6, 7], [0, 0, 0]])
        src = stack.voxel_to_slice(kji)
        np.testing.assert_array_equal(stack.slice_to_voxel(src), kji)
        mask = np.zeros(volume.array.shape, bool)
        stack.view(mask)[tuple(src[0])] = True
        assert mask[1, 2, 3] and mask.sum() == 1


def test_ras_point_maps_to_its_voxel(volume):
    stored = flipped_storage(volume, 0)
    stack = SliceStack.of(stored, "axial")
    kji = np.array([2, 3, 4])
    ras = stored.ijk_to_ras_points(kji[::-1])
    np.testing.assert_array_equal(stack.ras_to_slice(stored, ras), stack.voxel_to_slice(kji))
    with pytest.raises(InputError, match="outside the volume"):
        stack.ras_to_slice(stored, [[1000.0, 0.0, 0.0]])


@pytest.mark.parametrize("axis", AXES)
def test_a_slice_mask_lands_on_the_same_anatomy_however_the_voxels_are_stored(volume, axis):
    """What the server answers for one slice goes back onto the volume at the same RAS positions."""
    slice_mask = np.zeros(SliceStack.of(volume, axis).shape[1:], bool)
    slice_mask[1, 2:4] = True
    reference = None
    for stored in (volume, flipped_storage(volume, 0), flipped_storage(volume, 2), permuted_storage(volume)):
        mask = SliceStack.of(stored, axis).volume_mask(stored.array.shape, 2, slice_mask)
        ras = np.sort(stored.ijk_to_ras_points(np.argwhere(mask)[:, ::-1]), axis=0)
        assert mask.sum() == 2
        if reference is None:
            reference = ras
        np.testing.assert_allclose(ras, reference, atol=1e-6)
