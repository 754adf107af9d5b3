"""``vfmlab btvae-train`` / ``btvae-predict`` / ``btvae-study`` on the real abdomen CT (liver = 5)."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import slicerio
from PIL import Image

from vfmlab import mrml
from vfmlab.btvae.study import STUDY_RATIOS
from vfmlab.cli import main
from vfmlab.volume_io import read_labels, read_volume


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def ct(shared_data):
    return shared_data / "totalseg" / "example_ct.nii.gz", shared_data / "totalseg" / "example_seg_fast_force_split.nii.gz"


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, ct):
    """A BT-VAE trained long enough (at 64²) for its masks to find the liver."""
    run_dir = tmp_path_factory.mktemp("btvae") / "run"
    code = main(["btvae-train", str(ct[0]), str(ct[1]), "--label", "5", "--ratio", "0.3", "--size", "64",
                 "--pretrain-epochs", "2", "--epochs", "30", "--samples", "4", "--out", str(run_dir)])
    assert code == 0
    return run_dir


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_train_writes_metrics_on_held_back_slices(trained_run):
    metrics = json.loads((trained_run / "summary.json").read_text())
    for name in ("dice", "iou", "precision", "recall"):
        assert 0.0 <= metrics[name] <= 1.0
    assert metrics["model"] == "btvae" and metrics["ratio"] == 0.3
    assert metrics["dice"] > 0.4  # learned the liver, not chance (chance ≈ liver fraction of the slices)
    split = json.loads((trained_run / "split.json").read_text())
    assert not set(split["test"]) & (set(split["labelled"]) | set(split["unlabelled"]))
    assert (trained_run / "model.pt").is_file() and (trained_run / "metrics.jsonl").is_file()


def test_predict_writes_a_slicer_segmentation_and_uncertainty_volume(trained_run, ct, tmp_path, scene, capsys):
    seg_path, unc_path = tmp_path / "liver.seg.nrrd", tmp_path / "liver_uncertainty.nrrd"
    assert main(["btvae-predict", str(trained_run), str(ct[0]), "--out", str(seg_path),
                 "--uncertainty", str(unc_path)]) == 0
    summary = json.loads(capsys.readouterr().out)
    volume = read_volume(ct[0])
    reference = read_labels(ct[1], volume) == 5
    # Read back through Slicer's own storage nodes, as Slicer opens them.
    volume_node = mrml.load_volume_node(scene, ct[0])
    segmentation_node = mrml.load_segmentation_node(scene, seg_path)
    (segment_id, name), = mrml.segment_names(segmentation_node).items()
    assert name == "btvae label 5"
    mask = mrml.segment_mask(segmentation_node, segment_id, volume_node)
    assert mask.sum() == summary["voxels"]
    assert dice(mask, reference) > 0.4
    assert [s["name"] for s in slicerio.read_segmentation(str(seg_path))["segments"]] == ["btvae label 5"]
    uncertainty = mrml.volume_from_node(mrml.load_volume_node(scene, unc_path))
    assert uncertainty.same_geometry(volume)
    assert uncertainty.array.min() >= 0.0 and 0.0 < uncertainty.array.max() <= 0.25
    # Uncertainty concentrates where the model hesitates: near the mask's border more than far outside it.
    assert summary["mean_variance_in_mask"] > float(uncertainty.array[~mask].mean())


def test_predict_refuses_a_corrupt_model_and_writes_nothing(trained_run, ct, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.pt").write_bytes((trained_run / "model.pt").read_bytes()[:1000])
    out = tmp_path / "x.seg.nrrd"
    assert main(["btvae-predict", str(broken), str(ct[0]), "--out", str(out)]) == 2
    assert "corrupt" in capsys.readouterr().err
    assert main(["btvae-predict", str(tmp_path), str(ct[0]), "--out", str(out)]) == 2
    assert "has no trained" in capsys.readouterr().err
    assert not out.exists()


def test_study_writes_table_and_plot_for_every_model_and_ratio(ct, tmp_path, capsys):
    out = tmp_path / "study"
    assert main(["btvae-study", str(ct[0]), str(ct[1]), "--label", "5", "--size", "32", "--pretrain-epochs", "1",
                 "--epochs", "2", "--samples", "2", "--out", str(out)]) == 0
    with open(out / "study.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert {(r["model"], float(r["ratio"])) for r in rows} == {
        (m, r) for m in ("btvae", "vae", "unet", "bt-unet") for r in STUDY_RATIOS}
    for row in rows:
        for name in ("dice", "iou", "precision", "recall", "fp_rate"):
            assert 0.0 <= float(row[name]) <= 1.0
    labelled = {float(r["ratio"]): int(r["labelled_slices"]) for r in rows if r["model"] == "unet"}
    assert labelled[0.9] > labelled[0.5] > labelled[0.1] >= 1
    assert len(json.loads((out / "study.json").read_text())["rows"]) == 20
    with Image.open(out / "study.png") as plot:
        assert plot.size == (1000, 400)
    # Stage 1 ran once per pretrained model and every ratio's run reused it; all runs share test slices.
    config = json.loads((out / "runs" / "btvae_10" / "config.json").read_text())
    assert config["pretrained"] == str(out / "pretrain" / "btvae" / "pretrained.pt")
    assert sorted(p.name for p in (out / "pretrain").iterdir()) == ["bt-unet", "btvae"]
    tests = {json.dumps(json.loads((run / "split.json").read_text())["test"]) for run in (out / "runs").iterdir()}
    assert len(tests) == 1
    assert "20 runs" in capsys.readouterr().out
