"""Segment placement in physical space, for every orientation a volume file can carry.

A mask computed on display-oriented slices must land on the voxels it was computed on: checked as RAS
points of the written ``.seg.nrrd``, read back through Slicer's segmentation storage node and through
SimpleITK, against the volume's voxel centres, for all 48 axis permutations and flips (left- and
right-handed), oblique directions and all three slice axes; and through ``segment-eval``.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import SimpleITK as sitk

from vfmlab import mrml
from vfmlab.cli import main
from vfmlab.errors import InputError
from vfmlab.volume_io import read_labels, read_volume, write_volume
from vfmlab.segment.evaluation import evaluate_segmentation
from vfmlab.slices import AXES, SliceStack
from vfmlab.volume import LPS_TO_RAS, Volume

SIGNED_PERMUTATIONS = [
    (permutation, signs)
    for permutation in itertools.permutations(range(3))
    for signs in itertools.product((1, -1), repeat=3)
]


def signed_permutation(permutation, signs) -> np.ndarray:
    direction = np.zeros((3, 3))
    for column, (row, sign) in enumerate(zip(permutation, signs)):
        direction[row, column] = sign
    return direction


def rotation(angle: float, axis: int) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    a, b = [n for n in range(3) if n != axis]
    matrix = np.eye(3)
    matrix[a, a], matrix[a, b], matrix[b, a], matrix[b, b] = c, -s, s, c
    return matrix


def test_the_orientations_cover_both_handednesses():
    determinants = {round(np.linalg.det(signed_permutation(*p))) for p in SIGNED_PERMUTATIONS}
    assert len(SIGNED_PERMUTATIONS) == 48 and determinants == {-1, 1}


def make_volume(direction: np.ndarray) -> Volume:
    rng = np.random.default_rng(0)
    array = rng.normal(size=(6, 7, 8)).astype(np.float32)  # K, J, I of different sizes: a transpose shows
    return Volume(array, (0.7, 0.9, 1.3), (12.0, -30.0, 45.0), direction, "oriented")


def slice_pattern(stack: SliceStack) -> np.ndarray:
    """An asymmetric set of ``(slice, row, col)`` pixels: any flip or transpose of it is another set."""
    slices, rows, cols = stack.shape
    return np.array([[1, 0, 0], [1, 0, 1], [1, 1, 0], [slices - 2, rows - 1, cols - 2], [slices - 2, 2, 1]])


def ras_of_voxels(mask: np.ndarray, ijk_to_ras: np.ndarray) -> np.ndarray:
    kji = np.argwhere(mask)
    ras = kji[:, ::-1] @ ijk_to_ras[:3, :3].T + ijk_to_ras[:3, 3]
    return ras[np.lexsort(np.round(ras, 3).T)]


def ras_through_simpleitk(path) -> np.ndarray:
    image = sitk.ReadImage(str(path))
    indices = np.argwhere(sitk.GetArrayFromImage(image) > 0)[:, ::-1]
    lps = np.array([image.TransformIndexToPhysicalPoint([int(v) for v in index]) for index in indices])
    ras = lps @ LPS_TO_RAS.T
    return ras[np.lexsort(np.round(ras, 3).T)]


def write_computed_segment(volume_path, axis: str, out_path) -> np.ndarray:
    """What ``vfmlab segment`` does with the slice masks of one prompt; returns the expected RAS points."""
    volume = read_volume(volume_path)
    stack = SliceStack.of(volume, axis)
    pixels = slice_pattern(stack)
    slice_masks: dict[int, np.ndarray] = {}
    for index, row, col in pixels:
        slice_masks.setdefault(int(index), np.zeros(stack.shape[1:], bool))[row, col] = True
    mask = np.zeros(volume.array.shape, bool)
    for index, slice_mask in slice_masks.items():
        stack.view(mask)[index] = slice_mask
    scene = mrml.new_scene()
    node = mrml.add_volume_node(scene, volume)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    mrml.add_segment(segmentation, volume.with_array(mask), node, "pattern")
    mrml.save_segmentation_node(segmentation, out_path)
    return ras_of_voxels(mask, volume.ijk_to_ras)


def check_placement(tmp_path, volume: Volume, axis: str) -> None:
    volume_path = write_volume(volume, tmp_path / "volume.nrrd")
    seg_path = tmp_path / "pattern.seg.nrrd"
    expected = write_computed_segment(volume_path, axis, seg_path)

    np.testing.assert_allclose(ras_through_simpleitk(seg_path), expected, atol=1e-3)
    scene = mrml.new_scene()
    slicer_node = mrml.load_volume_node(scene, volume_path)  # Slicer's reader may reorder a left-handed grid
    segmentation = mrml.load_segmentation_node(scene, seg_path)
    segment_id = next(iter(mrml.segment_names(segmentation)))
    on_slicer_grid = mrml.segment_mask(segmentation, segment_id, slicer_node)
    np.testing.assert_allclose(ras_of_voxels(on_slicer_grid, mrml.volume_from_node(slicer_node).ijk_to_ras), expected, atol=1e-3)

    reference = np.zeros(volume.array.shape, np.int16)
    kji = np.rint(volume.ras_to_ijk_points(expected)).astype(int)[:, ::-1]
    reference[tuple(kji.T)] = 3
    reference_path = write_volume(volume.with_array(reference), tmp_path / "reference.nrrd")
    (row,) = evaluate_segmentation(seg_path, reference_path, {"pattern": 3})
    assert row["dice"] == 1.0 and row["predicted_voxels"] == len(expected)


@pytest.mark.parametrize("permutation, signs", SIGNED_PERMUTATIONS)
def test_segment_lands_on_its_voxels_for_every_axis_permutation_and_flip(tmp_path, permutation, signs):
    volume = make_volume(signed_permutation(permutation, signs))
    for axis in AXES:
        check_placement(tmp_path, volume, axis)


@pytest.mark.parametrize("angle, rotation_axis, permutation, signs", [
    (0.3, 2, (0, 1, 2), (1, 1, 1)), (0.35, 0, (0, 1, 2), (1, -1, 1)), (-0.3, 1, (2, 0, 1), (-1, 1, 1)),
    (0.25, 2, (1, 0, 2), (1, 1, -1)),
])
def test_segment_lands_on_its_voxels_on_oblique_grids(tmp_path, angle, rotation_axis, permutation, signs):
    volume = make_volume(rotation(angle, rotation_axis) @ signed_permutation(permutation, signs))
    for axis in AXES:
        check_placement(tmp_path, volume, axis)


def test_a_mask_on_a_physically_different_grid_is_refused(scene):
    volume = make_volume(np.eye(3))
    node = mrml.add_volume_node(scene, volume)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    shifted = Volume(np.ones(volume.array.shape, bool), volume.spacing, (13.0, -30.0, 45.0), volume.direction)
    with pytest.raises(InputError, match="grid"):
        mrml.add_segment(segmentation, shifted, node, "shifted")
    assert segmentation.GetSegmentation().GetNumberOfSegments() == 0


def test_labels_of_a_reordered_grid_are_read_onto_the_volume(tmp_path):
    """Slicer's reader and SimpleITK order a left-handed file's voxels differently; labels must follow RAS."""
    volume = make_volume(signed_permutation((0, 1, 2), (-1, 1, 1)))
    labels = np.zeros(volume.array.shape, np.int16)
    labels[1, 2, 3] = 4
    flipped = Volume(labels[::-1].copy(), volume.spacing, volume.ijk_to_ras_points([[0, 0, 5]])[0],
                     volume.direction @ np.diag([1.0, 1.0, -1.0]))
    read_back = read_labels(write_volume(flipped, tmp_path / "labels.nrrd"), volume)
    np.testing.assert_array_equal(read_back, labels)


@pytest.fixture(scope="module")
def brain(shared_data):
    folder = shared_data / "pyradiomics"
    return folder / "brain2_image.nrrd", folder / "brain2_label.nrrd"


def test_the_real_left_handed_file_is_left_handed_in_its_header(brain):
    volume = read_volume(brain[0])
    assert np.linalg.det(volume.direction) < 0


def test_reference_masks_written_on_a_left_handed_file_score_dice_one(tmp_path, brain):
    image_path, label_path = brain
    volume = read_volume(image_path)
    labels = read_labels(label_path, volume)
    stack = SliceStack.of(volume, "axial")
    slice_masks = {k: m for k, m in enumerate(stack.view(labels) > 0) if m.any()}
    mask = np.zeros(volume.array.shape, bool)
    for index, slice_mask in slice_masks.items():
        stack.view(mask)[index] = slice_mask
    scene = mrml.new_scene()
    node = mrml.add_volume_node(scene, volume)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    mrml.add_segment(segmentation, volume.with_array(mask), node, "tumour")
    seg_path = mrml.save_segmentation_node(segmentation, tmp_path / "tumour.seg.nrrd")
    (row,) = evaluate_segmentation(seg_path, label_path, {"tumour": int(labels.max())})
    assert row["dice"] == 1.0


def test_cli_box_on_a_left_handed_file_segments_the_tumour(tmp_path, brain, capsys):
    """Voxel indices on the command line are the file's own (as every other tool shows them)."""
    image_path, label_path = brain
    labels = read_volume(label_path).array
    k = int(np.argmax((labels > 0).sum(axis=(1, 2))))
    j, i = np.nonzero(labels[k] > 0)
    out = tmp_path / "tumour.seg.nrrd"
    assert main(["segment", str(image_path), "--slice", str(k), "--box", f"{i.min()},{j.min()},{i.max()},{j.max()}",
                 "--name", "tumour", "--out", str(out)]) == 0
    (row,) = evaluate_segmentation(out, label_path, {"tumour": int(labels.max())})
    tumour_on_slice = (labels[k] > 0).sum() / (labels > 0).sum()
    assert row["precision"] > 0.7
    assert row["recall"] > 0.6 * tumour_on_slice
