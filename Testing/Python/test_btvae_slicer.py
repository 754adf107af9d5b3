"""BT-VAE panel logic with REAL MRML (slicer-core): a segment of a scene trains a model, and the
prediction lands in a real segmentation node with the uncertainty volume beside it."""
from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from vfmlab import mrml
from vfmlab.btvae.prediction import VolumePrediction
from vfmlab.btvae.scene import add_prediction
from vfmlab.errors import InputError
from vfmlab.volume_io import read_labels, read_volume
from vfmlab.client import ServerError

from conftest import FakeTimers, ready_client, wait_for

REPO = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO / "SegmentationTools"


@pytest.fixture(scope="module")
def lib():
    folders = [str(MODULE_DIR), str(REPO / "VFMVolumeLab")]
    sys.path[:0] = folders
    try:
        yield importlib.import_module("SegmentationToolsLib.btvae_logic")
    finally:
        for folder in folders:
            sys.path.remove(folder)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def ct_scene(shared_data):
    """Scene with the CT and a reference segmentation holding only the liver (as a user would have it)."""
    scene = mrml.new_scene()
    path = shared_data / "totalseg" / "example_ct.nii.gz"
    volume_node = mrml.load_volume_node(scene, path, name="CT")
    liver = read_labels(shared_data / "totalseg" / "example_seg_fast_force_split.nii.gz", read_volume(path)) == 5
    segmentation = mrml.add_segmentation_from_labels(scene, liver.astype(np.uint8), volume_node, names={1: "liver"})
    yield scene, volume_node, segmentation, liver
    scene.Clear(1)


def follow(logic, start, timeout: float = 600.0):
    """Start a job through the logic with hand-driven timers; ``(state, outcome, progress)`` once it ended."""
    done, progress = [], []
    follower = start(on_progress=lambda fraction, _: progress.append(fraction),
                     on_done=lambda state, outcome: done.append((state, outcome)))
    assert wait_for(lambda: logic.timer_factory[-1].fire() or done, timeout), "the job did not end"
    assert not follower.is_running
    return (*done[0], progress)


@pytest.fixture(scope="module")
def client(model_server):
    return ready_client(model_server)


@pytest.fixture(scope="module")
def trained(lib, ct_scene, tmp_path_factory, client):
    """Train through the panel's path: the logic sends the volume and the segment, the server trains."""
    scene, volume_node, segmentation, _ = ct_scene
    run_dir = tmp_path_factory.mktemp("btvae_panel") / "run"
    settings = lib.TrainingSettings(model="btvae", ratio=0.3, image_size=64, pretrain_epochs=2, epochs=30, samples=4)
    segment_id = segmentation.GetSegmentation().GetNthSegmentID(0)
    logic = lib.BTVAELogic(scene, timer_factory=FakeTimers())
    state, result, progress = follow(logic, lambda **callbacks: logic.start_training(
        client, volume_node, segmentation, segment_id, run_dir, settings, threads=1, **callbacks))
    assert state == "finished", result
    assert progress and progress[-1] <= 1.0
    return run_dir, result


def test_training_job_from_scene_nodes(lib, trained, ct_scene):
    run_dir, result = trained
    scene, volume_node, _, liver = ct_scene
    params = json.loads((run_dir / "job.json").read_text())["params"]  # the job's, as the server resolved them
    labels = read_volume(params["sources"][0]["labels"])
    assert labels.same_geometry(mrml.volume_from_node(volume_node))
    np.testing.assert_array_equal(labels.array > 0, liver)
    assert not (run_dir / "model.pt").exists(), "the model stays on the server"
    metrics = lib.BTVAELogic.read_metrics(run_dir)
    assert metrics == pytest.approx(result["metrics"])
    rows = dict(lib.BTVAELogic.metrics_rows(metrics))
    assert set(rows) >= {"Dice", "IoU", "Precision", "Recall", "False-positive rate (negative slices)"}
    assert lib.BTVAELogic.trained_segment_name(run_dir) == "liver"


def predict(lib, client, scene, run_dir, volume_node, segmentation, samples, uncertainty=True):
    """The panel's path: the logic sends the volume, the server predicts, the maps come back into the run's
    mirror and the logic puts them into the scene."""
    logic = lib.BTVAELogic(scene, timer_factory=FakeTimers())
    state, outcome, _ = follow(logic, lambda **callbacks: logic.start_prediction(client, run_dir, volume_node,
                                                                                 samples=samples, **callbacks))
    assert state == "finished", outcome
    assert Path(outcome["out"]).parent == run_dir / "predictions"
    return logic.add_prediction(run_dir, outcome, volume_node, segmentation, uncertainty=uncertainty)


def test_prediction_lands_in_the_segmentation_with_uncertainty_beside_it(lib, trained, ct_scene, client):
    run_dir, _ = trained
    scene, volume_node, segmentation, liver = ct_scene
    reference_id = segmentation.GetSegmentation().GetNthSegmentID(0)
    nodes = predict(lib, client, scene, run_dir, volume_node, segmentation, samples=4)
    assert nodes.segmentation_node is segmentation
    names = mrml.segment_names(segmentation)
    assert names[reference_id] == "liver" and names[nodes.segment_id] == "liver (btvae)"  # a new segment
    predicted = mrml.segment_mask(segmentation, nodes.segment_id, volume_node)
    np.testing.assert_array_equal(mrml.segment_mask(segmentation, reference_id, volume_node), liver)
    assert 2.0 * (predicted & liver).sum() / (predicted.sum() + liver.sum()) > 0.4
    uncertainty = mrml.volume_from_node(nodes.uncertainty_node)
    assert uncertainty.same_geometry(mrml.volume_from_node(volume_node))
    assert nodes.uncertainty_node.GetScene() is scene and uncertainty.array.max() > 0
    display = nodes.uncertainty_node.GetDisplayNode()
    assert display.GetColorNodeID() == "vtkMRMLPETProceduralColorNodePET-Heat"
    assert display.GetWindowLevelMax() == pytest.approx(float(uncertainty.array.max()), rel=1e-5)
    # Without a segmentation node a new one is made.
    again = predict(lib, client, scene, run_dir, volume_node, None, samples=2, uncertainty=False)
    assert again.segmentation_node is not segmentation and again.uncertainty_node is None


def test_bad_requests_leave_the_scene_untouched(lib, trained, ct_scene, tmp_path, client):
    run_dir, _ = trained
    scene, volume_node, segmentation, _ = ct_scene
    before = scene.GetNumberOfNodes()
    segments_before = segmentation.GetSegmentation().GetNumberOfSegments()
    logic = lib.BTVAELogic(scene, timer_factory=FakeTimers())
    with pytest.raises(ServerError, match="not a run started through a model server"):
        logic.start_prediction(client, tmp_path, volume_node)
    empty = VolumePrediction(*(np.zeros(volume_node.GetImageData().GetDimensions()[::-1], t) for t in (np.float32, bool, np.float32)),
                             probabilistic=True, samples=1)
    with pytest.raises(InputError, match="predicted no voxel"):
        add_prediction(scene, volume_node, empty, "x", segmentation)
    deterministic = VolumePrediction(empty.probability, ~empty.mask, empty.variance, probabilistic=False, samples=1)
    with pytest.raises(InputError, match="deterministic"):
        add_prediction(scene, volume_node, deterministic, "x", segmentation)
    with pytest.raises(InputError, match="select the volume"):
        logic.start_training(client, None, segmentation, "x", tmp_path, lib.TrainingSettings())
    empty_id = segmentation.GetSegmentation().AddEmptySegment("empty")
    try:
        with pytest.raises(InputError, match="is empty"):
            logic.start_training(client, volume_node, segmentation, empty_id, tmp_path, lib.TrainingSettings())
    finally:
        segmentation.GetSegmentation().RemoveSegment(empty_id)
    assert not logic.followers
    assert scene.GetNumberOfNodes() == before
    assert segmentation.GetSegmentation().GetNumberOfSegments() == segments_before
    assert not (tmp_path / "inputs").exists()


def test_btvae_core_imports_neither_slicer_nor_qt():
    for path in (REPO / "vfmlab" / "btvae").glob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(import|from)\s+(slicer|qt|ctk)\b", text, re.M), path
    logic = (MODULE_DIR / "SegmentationToolsLib" / "btvae_logic.py").read_text()
    assert not re.search(r"^\s*(import|from)\s+(qt|ctk|slicer)\b", logic, re.M)
