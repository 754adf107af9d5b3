"""SegmentationTools' segment logic on real MRML: markups → prompts, segments written safely, undo."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import slicer

from vfmlab import mrml
from vfmlab.errors import InputError
from vfmlab.volume_io import read_labels, read_volume
from vfmlab.metrics import segment_metrics
from vfmlab.mrml.markups import slice_prompt
from vfmlab.slices import SliceStack
from vfmlab.volume import Volume

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "SegmentationTools"))
from SegmentationToolsLib.segment_logic import SegmentSession  # noqa: E402


@pytest.fixture(scope="module")
def sample(shared_data):
    ct = read_volume(shared_data / "totalseg" / "example_ct.nii.gz")
    return ct, read_labels(shared_data / "totalseg" / "example_seg_fast_force_split.nii.gz", ct)


def markups(scene, class_name: str, points_ras) -> object:
    node = getattr(slicer, class_name)()
    scene.AddNode(node)
    for point in points_ras:
        node.AddControlPointWorld(*point)
    return node


def test_points_and_box_map_to_the_right_pixels_on_a_flipped_volume():
    direction = np.diag([-1.0, -1.0, 1.0])  # stored LPS-like: I runs right→left, J anterior→posterior
    volume = Volume(np.zeros((5, 6, 7), np.int16), (2.0, 3.0, 4.0), (10.0, 20.0, -5.0), direction)
    stack = SliceStack.of(volume, "axial")
    inside = volume.ijk_to_ras_points([[2, 3, 1]])
    outside = volume.ijk_to_ras_points([[5, 1, 1]])
    corners = volume.ijk_to_ras_points([[1, 1, 1], [4, 4, 1]])
    prompt = slice_prompt(volume, "axial", inside, outside, corners)
    expected_inside = stack.voxel_to_slice([[1, 3, 2]])[0]
    expected_outside = stack.voxel_to_slice([[1, 1, 5]])[0]
    assert prompt.index == expected_inside[0] == 1
    np.testing.assert_array_equal(prompt.points, [expected_inside[[2, 1]], expected_outside[[2, 1]]])
    np.testing.assert_array_equal(prompt.point_labels, [1, 0])
    rows_cols = stack.voxel_to_slice([[1, 1, 1], [1, 4, 4]])[:, 1:]
    assert prompt.box == (rows_cols[:, 1].min(), rows_cols[:, 0].min(), rows_cols[:, 1].max(), rows_cols[:, 0].max())
    with pytest.raises(InputError, match="same slice"):
        slice_prompt(volume, "axial", volume.ijk_to_ras_points([[2, 3, 1], [2, 3, 3]]))


@pytest.fixture(scope="module")
def segment_session(sample):
    scene = mrml.new_scene()
    volume_node = mrml.add_volume_node(scene, sample[0], name="CT")
    return scene, volume_node, SegmentSession(volume_node, "litemedsam", device="cpu")


def test_roi_prompt_segments_the_spleen_into_a_new_segment_and_undo_restores(segment_session, sample):
    scene, volume_node, session = segment_session
    ct, labels = sample
    stack = SliceStack.of(ct, "axial")
    spleen = stack.view(labels) == 1
    index = int(np.flatnonzero(spleen.any(axis=(1, 2)))[15])
    rows, cols = np.nonzero(spleen[index])
    corner_kji = stack.slice_to_voxel([[index, rows.min(), cols.min()], [index, rows.max(), cols.max()]])
    corners = ct.ijk_to_ras_points(corner_kji[:, ::-1])
    roi = slicer.vtkMRMLMarkupsROINode()
    scene.AddNode(roi)
    roi.SetXYZ(*corners.mean(axis=0))
    roi.SetRadiusXYZ(*(np.abs(corners[1] - corners[0]) / 2))
    prompt = session.prompt_from_markups("axial", roi_node=roi, slice_index=index)

    segmentation = mrml.add_segmentation_from_labels(scene, labels, volume_node, names={1: "spleen", 5: "liver"})
    before = {sid: mrml.segment_mask(segmentation, sid, volume_node).sum() for sid in mrml.segment_names(segmentation)}
    result = session.segment(prompt, segmentation, "spleen (LiteMedSAM)")
    written = mrml.segment_mask(segmentation, result.segment_id, volume_node)
    score = segment_metrics(stack.view(written)[index], spleen[index])["dice"]
    print(f"ROI-prompted spleen in a real segmentation node: Dice {score:.3f}")
    assert score > 0.85 and stack.view(written).sum() == stack.view(written)[index].sum()
    assert mrml.segment_names(segmentation)[result.segment_id] == "spleen (LiteMedSAM)"
    after = {sid: mrml.segment_mask(segmentation, sid, volume_node).sum() for sid in before}
    assert after == before, "a user's segment changed"

    liver_id = {n: s for s, n in mrml.segment_names(segmentation).items()}["liver"]
    session.write(segmentation, written, "liver", mode="replace", segment_id=liver_id)
    np.testing.assert_array_equal(mrml.segment_mask(segmentation, liver_id, volume_node), written)
    assert session.undo() == "replace liver"
    np.testing.assert_array_equal(mrml.segment_mask(segmentation, liver_id, volume_node), labels == 5)
    assert session.undo() == "new spleen (LiteMedSAM)"
    assert result.segment_id not in mrml.segment_names(segmentation)
    assert not session.can_undo and session.undo() == ""


def test_model_status_metrics_and_finetune_params(tmp_path, sample, monkeypatch):
    from SegmentationToolsLib.segment_logic import finetune_job_params, metrics_rows, model_status, panel_finetune_config

    from vfmlab.segment.config import SegmenterFinetuneConfig

    monkeypatch.setenv("VFMLAB_WEIGHTS_DIR", str(tmp_path / "weights"))
    status = {name: (available, message) for name, available, message in model_status()}
    assert status["litemedsam"][0] and status["hq_litemedsam"][0]
    assert not status["sam_vit_b"][0] and "sam_vit_b_01ec64.pth" in status["sam_vit_b"][1]

    ct, labels = sample
    scene = mrml.new_scene()
    volume_node = mrml.add_volume_node(scene, ct)
    reference = mrml.add_segmentation_from_labels(scene, labels, volume_node, names={1: "spleen", 2: "kidney_right"})
    ids = {n: s for s, n in mrml.segment_names(reference).items()}
    shifted = np.roll(labels == 1, 2, axis=2)
    predicted = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    predicted_id = mrml.add_segment(predicted, shifted, volume_node, "spleen guess")
    row = metrics_rows(volume_node, predicted, [predicted_id], reference, [ids["spleen"]])[0]
    assert row["segment"] == "spleen guess"
    assert row["dice"] == pytest.approx(segment_metrics(shifted, labels == 1)["dice"])
    assert row["hd95_mm"] == pytest.approx(2 * ct.spacing[0], abs=0.5)

    params = finetune_job_params(volume_node, reference, [ids["kidney_right"], ids["spleen"]], tmp_path / "run",
                                 panel_finetune_config(3, train_decoder=True))
    config = SegmenterFinetuneConfig(**params["config"])  # the job builds its config from these keys
    assert config.segments == {"kidney_right": 1, "spleen": 2} and config.epochs == 3
    assert config.train_decoder and config.batch_size == 4 and config.cosine_schedule
    hq_only = SegmenterFinetuneConfig(**panel_finetune_config(3, train_decoder=False))
    assert not hq_only.train_decoder and hq_only.learning_rate > config.learning_rate
    written = read_labels(params["labels"], read_volume(params["volume"]))
    np.testing.assert_array_equal(written == 1, labels == 2)
    np.testing.assert_array_equal(written == 2, labels == 1)
