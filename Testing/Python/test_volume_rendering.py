"""Headless volume rendering with Slicer's logic and displayable manager: geometry, presets, segment IDs."""
from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib.path import Path as PolygonPath
from scipy import ndimage
from scipy.spatial import ConvexHull

from vfmlab.cameras import CaptureSet
from vfmlab.errors import InputError
from vfmlab.render.capture import RenderSettings, SegmentLabels, capture_views, render_file
from vfmlab.render.images import read_label_png, read_rgb
from vfmlab.render.poses import Orbit, orbit_records, volume_corners_ras
from vfmlab.volume import Volume

WHITE_STEP_TF = {  # opaque white above 500, transparent below; no shading: flat silhouettes
    "color": [[0, 1, 1, 1], [3000, 1, 1, 1]],
    "scalar_opacity": [[0, 0], [499, 0], [501, 1], [3000, 1]],
    "shading": False,
}


def oblique_volume(array: np.ndarray) -> Volume:
    """A volume with rotated, flipped axes, anisotropic spacing and an offset origin."""
    angle = np.radians(30)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    return Volume(array, spacing=(1.2, 0.9, 1.5), origin=(10.0, -20.0, 5.0), direction=rotation @ np.diag([-1, 1, 1]))


def hull_mask(points_xy: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pixels whose centre lies inside the convex hull of projected points."""
    hull = points_xy[ConvexHull(points_xy).vertices]
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    return PolygonPath(hull).contains_points(np.column_stack([xs.ravel(), ys.ravel()])).reshape(height, width)


def render(tmp_path, volume: Volume, records, settings: RenderSettings, labels=None) -> CaptureSet:
    from vfmlab import mrml

    scene = mrml.new_scene()
    node = mrml.add_volume_node(scene, volume)
    return capture_views(scene, node, records, tmp_path, settings, labels=labels)


@pytest.mark.parametrize("method", ["cpu", "gpu"])
def test_opaque_cube_silhouette_is_its_projection(tmp_path, method):
    array = np.zeros((44, 40, 48), np.int16)
    (k0, k1), (j0, j1), (i0, i1) = (10, 32), (8, 30), (14, 40)
    array[k0:k1, j0:j1, i0:i1] = 1000
    volume = oblique_volume(array)
    records = orbit_records(volume, Orbit(views=2, elevation=25.0, azimuth_start=20.0), 128, 112)
    capture = render(tmp_path, volume, records, RenderSettings(preset=None, transfer_function=WHITE_STEP_TF,
                                                               method=method, width=128, height=112))
    assert capture.transfer_function["rendering_method"] == f"vtkMRML{method.upper()}RayCastVolumeRenderingDisplayNode"
    # Linear interpolation puts the 500 iso-surface half-way between the last 0 and first 1000 voxel.
    box_ijk = np.array([[i, j, k] for i in (i0 - 0.5, i1 - 0.5) for j in (j0 - 0.5, j1 - 0.5)
                        for k in (k0 - 0.5, k1 - 0.5)])
    for record in capture.views:
        drawn = read_rgb(tmp_path / record.image).mean(axis=-1) > 127
        expected = hull_mask(record.project(volume.ijk_to_ras_points(box_ijk)), record.width, record.height)
        assert expected.sum() > 1500  # the cube covers a good part of the view
        iou = (drawn & expected).sum() / (drawn | expected).sum()
        assert iou > 0.93, iou
        # every disagreement is an edge pixel of the predicted silhouette
        edge = ndimage.binary_dilation(expected, iterations=1) & ~ndimage.binary_erosion(expected, iterations=1)
        assert not (drawn ^ expected)[~edge].any()


def test_camera_record_finds_a_bright_sphere_where_it_was_drawn(tmp_path):
    array = np.zeros((40, 44, 36), np.int16)
    k, j, i = np.mgrid[0:40, 0:44, 0:36]
    centre_ijk = np.array([26.0, 30.0, 11.0])  # off-centre, I J K
    array[(i - centre_ijk[0]) ** 2 + (j - centre_ijk[1]) ** 2 + (k - centre_ijk[2]) ** 2 <= 2.5 ** 2] = 1000
    volume = oblique_volume(array)
    centre_ras = volume.ijk_to_ras_points(centre_ijk)
    records = orbit_records(volume, Orbit(views=4, elevation=-35.0, azimuth_start=10.0), 96, 96)
    capture = render(tmp_path, volume, records, RenderSettings(preset=None, transfer_function=WHITE_STEP_TF,
                                                               width=96, height=96))
    for record in CaptureSet.load(tmp_path).views:  # the records as saved in cameras.json
        drawn = read_rgb(tmp_path / record.image).mean(axis=-1)
        assert (drawn > 127).sum() >= 4
        ys, xs = np.nonzero(drawn > 127)
        weights = drawn[ys, xs]
        centroid = np.array([np.average(xs, weights=weights), np.average(ys, weights=weights)]) + 0.5
        np.testing.assert_allclose(record.project(centre_ras)[0], centroid, atol=1.0)
    assert capture.volume_path is None and np.allclose(capture.ijk_to_ras, volume.ijk_to_ras)


def test_segment_ids_are_aligned_with_the_capture(tmp_path):
    array = np.zeros((30, 34, 38), np.int16)
    labels = np.zeros_like(array, dtype=np.int32)
    array[5:15, 6:16, 4:14] = 1000
    labels[5:15, 6:16, 4:14] = 7
    array[16:26, 18:28, 22:32] = 1000
    labels[16:26, 18:28, 22:32] = 300  # codes in two colour channels
    labels[0:3, 0:3, 0:3] = 12  # a segment the TF hides: "visible" IDs leave it out
    volume = oblique_volume(array)
    records = orbit_records(volume, Orbit(views=3, elevation=15.0), 100, 90)
    segments = SegmentLabels(labels, {7: "cube", 300: "box"}, {7: (1.0, 0.0, 0.0)})
    capture = render(tmp_path, volume, records, RenderSettings(preset=None, transfer_function=WHITE_STEP_TF,
                                                               width=100, height=90), labels=segments)
    seen = set()
    for record in capture.views:
        ids = read_label_png(tmp_path / record.labels_image)
        drawn = read_rgb(tmp_path / record.image).mean(axis=-1) > 127
        assert ids.shape == drawn.shape
        assert set(np.unique(ids)) <= {0, 7, 300}
        iou = (drawn & (ids > 0)).sum() / (drawn | (ids > 0)).sum()
        assert iou > 0.9, iou
        seen |= set(np.unique(ids).tolist())
    assert seen == {0, 7, 300}
    saved = json.loads((tmp_path / "cameras.json").read_text())
    assert saved["labels"]["segments"]["7"] == {"name": "cube", "color": [1.0, 0.0, 0.0]}
    assert saved["labels"]["mode"] == "visible" and "16-bit" in saved["labels"]["encoding"]


def test_sample_ct_with_ct_aaa(tmp_path, shared_data):
    from vfmlab.sample_data import sample_ct_path, sample_label_names, sample_labels_path

    settings = RenderSettings(preset="CT-AAA", width=128, height=128)
    capture = render_file(sample_ct_path(), tmp_path, settings, Orbit(views=2), segmentation=sample_labels_path(),
                          label_names=sample_label_names())
    volume_box = volume_corners_ras(_volume(sample_ct_path()))
    for record in capture.views:
        rgb = read_rgb(tmp_path / record.image)
        drawn = rgb.max(axis=-1) > 20
        inside = ndimage.binary_dilation(hull_mask(record.project(volume_box), 128, 128), iterations=2)
        assert 0.05 < drawn.mean() < 0.8 * inside.mean()  # bone and contrast only, not the whole box
        assert not drawn[~inside].any()
        ids = read_label_png(tmp_path / record.labels_image)
        names = {capture.labels["segments"][str(v)]["name"] for v in np.unique(ids) if v}
        assert {"hip_left", "hip_right"} <= names  # bones are what CT-AAA shows
        assert "liver" not in names  # soft tissue is transparent in CT-AAA
    tf = capture.transfer_function
    assert tf["preset"] == "CT-AAA" and tf["shading"] is True and tf["interpolation"] == "linear"
    assert tf["scalar_opacity"][1] == pytest.approx([143.556, 0.0])
    assert capture.volume_sha256 is not None and capture.sample_distance == pytest.approx(1.5)  # 3 mm / 2


def test_headsq_with_ct_bone_needs_its_1024_shift(tmp_path, shared_data):
    path = shared_data / "vtkdata" / "headsq_quarter.nrrd"
    fractions = {}
    for shift in (1024.0, 0.0):
        out = tmp_path / f"shift{int(shift)}"
        capture = render_file(path, out, RenderSettings(preset="CT-Bone", shift=shift, width=96, height=96,
                                                         shading=False), Orbit(views=1))
        record = capture.views[0]
        box = hull_mask(record.project(volume_corners_ras(_volume(path))), 96, 96)
        fractions[shift] = (read_rgb(out / record.image).max(axis=-1) > 20).sum() / box.sum()
        assert capture.transfer_function["applied_shift"] == shift
        assert capture.transfer_function["shading"] is False
    # Stored values are HU + 1024: shifted, air is transparent and the head is smaller than its box;
    # unshifted, air (~24) lies above CT-Bone's -16 HU threshold and fills the whole box.
    assert 0.3 < fractions[1024.0] < 0.85
    assert fractions[0.0] > 0.97
    first = CaptureSet.load(tmp_path / "shift1024").transfer_function["scalar_opacity"]
    assert first[1][0] == pytest.approx(-16.4458 + 1024)


def test_bad_settings_are_refused():
    with pytest.raises(InputError, match="unknown volume rendering preset"):
        RenderSettings(preset="CT-Nothing")
    with pytest.raises(InputError, match="'cpu' or 'gpu'"):
        RenderSettings(method="opengl")
    with pytest.raises(InputError, match="mode"):
        SegmentLabels(np.zeros((2, 2, 2)), {}, mode="surface")


def _volume(path) -> Volume:
    from vfmlab.volume_io import read_volume

    return read_volume(path)
