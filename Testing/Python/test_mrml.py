"""vfmlab.mrml against REAL MRML (the slicer-core wheel): volumes, segmentations, storage nodes, scenes."""
from __future__ import annotations

import numpy as np
import pytest
import slicer
import slicerio
import vtk

from vfmlab import mrml
from vfmlab.errors import InputError
from vfmlab.dvr.transfer_functions import PiecewiseTF
from vfmlab.volume_io import read_labels, read_volume, write_volume
from vfmlab.mrml.transfer_functions import load_volume_property_node, tf_from_volume_property, write_vp_file
from vfmlab.mrml.volumes import matrix_to_numpy, numpy_to_matrix
from vfmlab.volume import Volume


@pytest.fixture
def oblique() -> Volume:
    c, s = np.cos(0.4), np.sin(0.4)
    direction = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]]) @ np.diag([1.0, -1.0, -1.0])
    return Volume(np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5), (0.5, 1.5, 2.5), (3, -7, 11), direction)


@pytest.fixture(scope="module")
def sample(shared_data):
    ct = read_volume(shared_data / "totalseg" / "example_ct.nii.gz")
    labels = read_labels(shared_data / "totalseg" / "example_seg_fast_force_split.nii.gz", ct)
    return ct, labels


def test_volume_node_round_trip_is_exact(scene, oblique):
    node = mrml.add_volume_node(scene, oblique, name="obl")
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    np.testing.assert_allclose(matrix_to_numpy(matrix), oblique.ijk_to_ras, atol=1e-12)
    back = mrml.volume_from_node(node)
    np.testing.assert_array_equal(back.array, oblique.array)
    np.testing.assert_allclose(back.ijk_to_ras, oblique.ijk_to_ras, atol=1e-12)
    assert back.array.dtype == np.float32


def test_slicer_reader_agrees_with_vfmlab_reader(tmp_path, scene, oblique, shared_data):
    """Slicer's own archetype storage node and vfmlab.volume_io must see the same RAS geometry."""
    oblique_file = write_volume(oblique, tmp_path / "oblique.nrrd")
    for path in (oblique_file, shared_data / "totalseg" / "example_ct.nii.gz", shared_data / "vtkdata" / "HeadMRVolume.mhd"):
        ours = read_volume(path)
        theirs = mrml.volume_from_node(mrml.load_volume_node(scene, path))
        np.testing.assert_array_equal(theirs.array, ours.array)
        np.testing.assert_allclose(theirs.ijk_to_ras, ours.ijk_to_ras, atol=1e-4)


def test_load_volume_failure_leaves_scene_intact(tmp_path, scene):
    bad = tmp_path / "bad.nrrd"
    bad.write_text("NRRD0004\ntype: garbage\n")
    before = scene.GetNumberOfNodes()
    with pytest.raises(InputError, match="bad.nrrd"):
        mrml.load_volume_node(scene, bad)
    assert scene.GetNumberOfNodes() == before


@pytest.mark.parametrize("loader, file_name", [
    (mrml.load_segmentation_node, "bad.seg.nrrd"),
    (load_volume_property_node, "bad.vp"),
])
def test_unreadable_segmentation_or_vp_leaves_scene_intact(tmp_path, scene, loader, file_name):
    bad = tmp_path / file_name
    bad.write_text("not a Slicer file\n")
    before = scene.GetNumberOfNodes()
    with pytest.raises(InputError, match=file_name):
        loader(scene, bad)
    assert scene.GetNumberOfNodes() == before
    assert bad.read_text() == "not a Slicer file\n"


def test_vp_file_keeps_the_tf_in_slicers_unit_distance(tmp_path, scene):
    """.vp files and scenes do not store the unit distance, so the TF is written per 1 mm."""
    tf = PiecewiseTF([[-100, 0.1, 0.2, 0.3], [300, 0.9, 0.5, 0.1]], [[-100, 0.0], [200, 0.3], [300, 0.7]],
                     unit_distance=2.5)
    path = write_vp_file(tf, tmp_path / "tf" / "learned.vp")
    assert sorted(p.name for p in path.parent.iterdir()) == ["learned.vp"]  # no partial file left behind
    back = tf_from_volume_property(load_volume_property_node(scene, path).GetVolumeProperty())
    assert back.unit_distance == 1.0
    np.testing.assert_allclose(back.color, tf.color)
    # a 5 mm slab is as opaque with the file's TF as with the original one
    slab_mm = 5.0
    np.testing.assert_allclose((1 - back.opacity[:, 1]) ** (slab_mm / 1.0),
                               (1 - tf.opacity[:, 1]) ** (slab_mm / 2.5), rtol=1e-6)
    assert back.opacity[1, 1] < tf.opacity[1, 1]  # thinner unit → lower opacity per unit


def test_linear_parent_transform_is_applied(scene, oblique):
    node = mrml.add_volume_node(scene, oblique)
    transform = slicer.vtkMRMLLinearTransformNode()
    scene.AddNode(transform)
    shift = np.eye(4)
    shift[:3, 3] = (10, 20, 30)
    transform.SetMatrixTransformToParent(numpy_to_matrix(shift))
    node.SetAndObserveTransformNodeID(transform.GetID())
    np.testing.assert_allclose(mrml.volume_from_node(node).ijk_to_ras, shift @ oblique.ijk_to_ras, atol=1e-12)
    geometry = mrml.volume_geometry(node)  # positions without a copy of the voxels
    np.testing.assert_allclose(geometry.ijk_to_ras, shift @ oblique.ijk_to_ras, atol=1e-12)
    assert geometry.array.shape == oblique.array.shape and geometry.array.strides == (0, 0, 0)


def test_labels_to_segmentation_and_back(scene, sample):
    ct, labels = sample
    node = mrml.add_volume_node(scene, ct)
    names = {5: "liver", 1: "spleen", 52: "aorta"}
    seg = mrml.add_segmentation_from_labels(scene, labels, node, names=names, colors={5: (0.8, 0.4, 0.3)})
    values = sorted(int(v) for v in np.unique(labels) if v)
    assert seg.GetSegmentation().GetNumberOfSegments() == len(values) == 61
    by_name = {name: sid for sid, name in mrml.segment_names(seg).items()}
    assert {"liver", "spleen", "aorta", "Label 2"} <= set(by_name)
    mrml.segment_mask(seg, by_name["spleen"], node)  # the scene's lazily made singletons exist from here on
    nodes_before = scene.GetNumberOfNodes()
    assert seg.GetSegmentation().GetSegment(by_name["liver"]).GetColor() == pytest.approx((0.8, 0.4, 0.3))
    np.testing.assert_array_equal(mrml.segment_mask(seg, by_name["liver"], node), labels == 5)
    exported, value_names = mrml.labels_from_segmentation(seg, node, [by_name["aorta"], by_name["liver"]])
    assert value_names == {1: "aorta", 2: "liver"}
    np.testing.assert_array_equal(exported == 1, labels == 52)
    np.testing.assert_array_equal(exported == 2, labels == 5)
    # temporary helper nodes are gone, with the display and colour nodes the export made for them
    assert scene.GetNumberOfNodesByClass("vtkMRMLLabelMapVolumeNode") == 0
    assert scene.GetNumberOfNodes() == nodes_before


def test_add_segment_never_overwrites_silently(scene, sample):
    ct, labels = sample
    node = mrml.add_volume_node(scene, ct)
    seg = mrml.add_segmentation_from_labels(scene, labels, node, names={5: "liver", 1: "spleen"})
    liver_id = {n: s for s, n in mrml.segment_names(seg).items()}["liver"]
    count = seg.GetSegmentation().GetNumberOfSegments()
    new_id = mrml.add_segment(seg, labels == 1, node, "liver")
    assert new_id != liver_id and mrml.segment_names(seg)[new_id] == "liver (2)"
    np.testing.assert_array_equal(mrml.segment_mask(seg, liver_id, node), labels == 5)
    with pytest.raises(InputError, match="name it with segment_id"):
        mrml.add_segment(seg, labels == 1, node, "liver", mode="replace")
    with pytest.raises(InputError, match="empty"):
        mrml.add_segment(seg, np.zeros_like(labels, bool), node, "nothing")
    with pytest.raises(InputError, match="shape"):
        mrml.add_segment(seg, np.ones((2, 2, 2), bool), node, "wrong grid")
    assert seg.GetSegmentation().GetNumberOfSegments() == count + 1
    np.testing.assert_array_equal(mrml.segment_mask(seg, liver_id, node), labels == 5)


def test_replace_add_subtract_change_only_the_named_segment(scene, sample):
    ct, labels = sample
    node = mrml.add_volume_node(scene, ct)
    seg = mrml.add_segmentation_from_labels(scene, labels, node, names={5: "liver", 1: "spleen"})
    ids = {n: s for s, n in mrml.segment_names(seg).items()}
    liver, spleen = labels == 5, labels == 1
    mrml.add_segment(seg, spleen, node, "x", mode="add", segment_id=ids["liver"])
    np.testing.assert_array_equal(mrml.segment_mask(seg, ids["liver"], node), liver | spleen)
    mrml.add_segment(seg, spleen, node, "x", mode="subtract", segment_id=ids["liver"])
    np.testing.assert_array_equal(mrml.segment_mask(seg, ids["liver"], node), liver)
    mrml.add_segment(seg, spleen, node, "x", mode="replace", segment_id=ids["liver"])
    np.testing.assert_array_equal(mrml.segment_mask(seg, ids["liver"], node), spleen)
    np.testing.assert_array_equal(mrml.segment_mask(seg, ids["spleen"], node), spleen)
    assert mrml.segment_names(seg)[ids["liver"]] == "liver"


def test_segment_on_oblique_flipped_grid(scene, oblique):
    node = mrml.add_volume_node(scene, oblique)
    seg = slicer.vtkMRMLSegmentationNode()
    scene.AddNode(seg)
    mask = np.zeros(oblique.array.shape, bool)
    mask[0, 1, 3] = mask[2, 3, 0] = True  # asymmetric: a flip or transpose would move it
    sid = mrml.add_segment(seg, mask, node, "dots")
    np.testing.assert_array_equal(mrml.segment_mask(seg, sid, node), mask)


def test_seg_nrrd_written_by_storage_node_reads_in_slicerio(tmp_path, scene, sample):
    ct, labels = sample
    node = mrml.add_volume_node(scene, ct)
    seg = mrml.add_segmentation_from_labels(scene, labels, node, names={5: "liver", 1: "spleen"})
    path = mrml.save_segmentation_node(seg, tmp_path / "organs.seg.nrrd")
    segmentation = slicerio.read_segmentation(str(path))
    by_name = {s["name"]: s for s in segmentation["segments"]}
    assert {"liver", "spleen"} <= set(by_name) and len(by_name) == 61
    liver = slicerio.extract_segments(segmentation, [("liver", 1)])
    # slicerio's voxels are (I, J, K) over the segmentation's own extent: compare counts and RAS centroid
    assert int((liver["voxels"] == 1).sum()) == int((labels == 5).sum())
    reloaded = mrml.load_segmentation_node(scene, path)
    ids = {n: s for s, n in mrml.segment_names(reloaded).items()}
    np.testing.assert_array_equal(mrml.segment_mask(reloaded, ids["liver"], node), labels == 5)


def test_scene_save_and_reload(tmp_path, scene, sample):
    ct, labels = sample
    node = mrml.add_volume_node(scene, ct, name="CT")
    seg = mrml.add_segmentation_from_labels(scene, labels, node, names={5: "liver"})
    mrml.save_volume_node(node, tmp_path / "CT.nrrd")
    mrml.save_segmentation_node(seg, tmp_path / "CT.seg.nrrd")
    mrml_path = mrml.save_scene(scene, tmp_path / "scene.mrml")
    assert 'fileName="CT.nrrd"' in mrml_path.read_text()  # relative: the folder can be moved
    reloaded = mrml.load_scene(mrml_path)
    volume_node = reloaded.GetFirstNodeByName("CT")
    back = mrml.volume_from_node(volume_node)
    np.testing.assert_array_equal(back.array, ct.array)
    np.testing.assert_allclose(back.ijk_to_ras, ct.ijk_to_ras, atol=1e-9)
    seg_back = reloaded.GetFirstNodeByClass("vtkMRMLSegmentationNode")
    ids = {n: s for s, n in mrml.segment_names(seg_back).items()}
    np.testing.assert_array_equal(mrml.segment_mask(seg_back, ids["liver"], volume_node), labels == 5)


def test_nan_or_2d_file_is_refused_by_load_volume_node(tmp_path, scene, shared_data):
    array = np.zeros((3, 4, 5), np.float32)
    array[1, 1, 1] = np.nan
    nan_file = write_volume(Volume(array), tmp_path / "nan.nrrd")
    png = next((shared_data / "sammed2d_demo" / "images").glob("*.png"))
    before = scene.GetNumberOfNodes()
    with pytest.raises(InputError, match="NaN"):
        mrml.load_volume_node(scene, nan_file)
    with pytest.raises(InputError, match="2D image"):
        mrml.load_volume_node(scene, png)
    assert scene.GetNumberOfNodes() == before
