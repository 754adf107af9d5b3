"""BT-VAE panel logic with REAL MRML (slicer-core): a segment of a scene trains a model, and the
prediction lands in a real segmentation node with the uncertainty volume beside it."""
from __future__ import annotations

import importlib
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from vfmlab import mrml
from vfmlab.btvae.prediction import VolumePrediction
from vfmlab.btvae.scene import add_prediction
from vfmlab.errors import InputError
from vfmlab.volume_io import read_labels, read_volume
from vfmlab.jobs import Reporter, get_task

REPO = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO / "SegmentationTools"


@pytest.fixture(scope="module")
def lib():
    sys.path.insert(0, str(MODULE_DIR))
    try:
        yield importlib.import_module("SegmentationToolsLib.btvae_logic")
    finally:
        sys.path.remove(str(MODULE_DIR))


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


@pytest.fixture(scope="module")
def trained(lib, ct_scene, tmp_path_factory):
    """Train through the panel's path: logic writes the inputs and job params, the job task trains."""
    scene, volume_node, segmentation, _ = ct_scene
    run_dir = tmp_path_factory.mktemp("btvae_panel") / "run"
    settings = lib.TrainingSettings(model="btvae", ratio=0.3, image_size=64, pretrain_epochs=2, epochs=30, samples=4)
    segment_id = segmentation.GetSegmentation().GetNthSegmentID(0)
    job = lib.BTVAELogic(scene).training_job(volume_node, segmentation, segment_id, run_dir, settings, threads=1)
    importlib.import_module(job.module)  # what the job process does before looking the task up
    reporter = Reporter(None, log_file=run_dir.parent / "job.log")
    result = get_task(job.task)({**job.params, "resume": False}, reporter)
    return run_dir, result


def test_training_job_from_scene_nodes(lib, trained, ct_scene):
    run_dir, result = trained
    scene, volume_node, _, liver = ct_scene
    labels = read_volume(run_dir / "inputs" / "labels.nrrd")
    assert labels.same_geometry(mrml.volume_from_node(volume_node))
    np.testing.assert_array_equal(labels.array > 0, liver)
    metrics = lib.BTVAELogic.read_metrics(run_dir)
    assert metrics == pytest.approx(result["metrics"])
    rows = dict(lib.BTVAELogic.metrics_rows(metrics))
    assert set(rows) >= {"Dice", "IoU", "Precision", "Recall", "False-positive rate (negative slices)"}
    assert lib.BTVAELogic.trained_segment_name(run_dir) == "liver"


def predict(lib, scene, run_dir, volume_node, segmentation, samples, uncertainty=True):
    """The panel's path: the logic writes the volume and the job params, the job task predicts (here in this
    process, as the job process would), the logic puts the files it wrote into the scene."""
    logic = lib.BTVAELogic(scene)
    job = logic.prediction_job(run_dir, volume_node, samples=samples)
    importlib.import_module(job.module)
    outcome = get_task(job.task)(job.params, Reporter(None, log_file=job.workdir.parent / "job.log"))
    return logic.add_prediction(run_dir, outcome, volume_node, segmentation, uncertainty=uncertainty)


def test_prediction_lands_in_the_segmentation_with_uncertainty_beside_it(lib, trained, ct_scene):
    run_dir, _ = trained
    scene, volume_node, segmentation, liver = ct_scene
    reference_id = segmentation.GetSegmentation().GetNthSegmentID(0)
    nodes = predict(lib, scene, run_dir, volume_node, segmentation, samples=4)
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
    again = predict(lib, scene, run_dir, volume_node, None, samples=2, uncertainty=False)
    assert again.segmentation_node is not segmentation and again.uncertainty_node is None


def test_bad_requests_leave_the_scene_untouched(lib, trained, ct_scene, tmp_path):
    run_dir, _ = trained
    scene, volume_node, segmentation, _ = ct_scene
    before = scene.GetNumberOfNodes()
    segments_before = segmentation.GetSegmentation().GetNumberOfSegments()
    logic = lib.BTVAELogic(scene)
    with pytest.raises(InputError, match="holds no trained model"):
        logic.prediction_job(tmp_path, volume_node)
    empty = VolumePrediction(*(np.zeros(volume_node.GetImageData().GetDimensions()[::-1], t) for t in (np.float32, bool, np.float32)),
                             probabilistic=True, samples=1)
    with pytest.raises(InputError, match="predicted no voxel"):
        add_prediction(scene, volume_node, empty, "x", segmentation)
    deterministic = VolumePrediction(empty.probability, ~empty.mask, empty.variance, probabilistic=False, samples=1)
    with pytest.raises(InputError, match="deterministic"):
        add_prediction(scene, volume_node, deterministic, "x", segmentation)
    with pytest.raises(InputError, match="select the volume"):
        logic.training_job(None, segmentation, "x", tmp_path, lib.TrainingSettings())
    assert scene.GetNumberOfNodes() == before
    assert segmentation.GetSegmentation().GetNumberOfSegments() == segments_before
    assert not (tmp_path / "inputs").exists()


def test_panel_ui_has_every_widget_the_section_uses():
    ui = ET.parse(MODULE_DIR / "Resources" / "UI" / "BTVAE.ui").getroot()
    names = {widget.get("name") for widget in ui.iter("widget")}
    used = set(re.findall(r"self\.ui\.(\w+)", (MODULE_DIR / "SegmentationToolsLib" / "btvae_widget.py").read_text()))
    assert used and used <= names
    models = [item.find("property/string").text for widget in ui.iter("widget")
              if widget.get("name") == "btvaeModelComboBox" for item in widget.findall("item")]
    from vfmlab.btvae.registry import MODEL_NAMES

    assert tuple(models) == MODEL_NAMES


def test_btvae_core_imports_neither_slicer_nor_qt():
    for path in (REPO / "vfmlab" / "btvae").glob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(import|from)\s+(slicer|qt|ctk)\b", text, re.M), path
    logic = (MODULE_DIR / "SegmentationToolsLib" / "btvae_logic.py").read_text()
    assert not re.search(r"^\s*(import|from)\s+(qt|ctk|slicer)\b", logic, re.M)
