"""The command line end to end: render → probe (real LiteMedSAM, missing weights skipped), and three-balls."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from vfmlab.cli import main
from vfmlab.probes.run import load_inputs
from vfmlab.render.images import read_label_png, read_rgb

torch.set_num_threads(2)


@pytest.fixture
def no_downloaded_weights(tmp_path, monkeypatch):
    """An empty weights folder: only LiteMedSAM (shipped in its package) is available."""
    monkeypatch.setenv("VFMLAB_WEIGHTS_DIR", str(tmp_path / "weights"))


def test_render_then_probe(tmp_path, no_downloaded_weights):
    from vfmlab.sample_data import sample_ct_path, sample_data_dir, sample_labels_path

    captures, out = tmp_path / "captures", tmp_path / "probes"
    assert main(["render", str(sample_ct_path()), "--preset", "CT-AAA", "--views", "2", "--size", "96",
                 "--segmentation", str(sample_labels_path()), "--label-names",
                 str(sample_data_dir() / "VFMSampleCT_label_names.json"), "--out", str(captures)]) == 0
    assert sorted(p.name for p in captures.iterdir()) == ["cameras.json", "labels_000.png", "labels_001.png",
                                                          "view_000.png", "view_001.png"]
    inputs, names = load_inputs(captures / "view_001.png")  # one PNG of a capture folder keeps its segment IDs
    assert [i.name for i in inputs] == ["view_001"] and inputs[0].labels is not None and names[5] == "liver"

    assert main(["probe", str(captures), "--models", "litemedsam,dino_vitb16", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["models"]) == ["litemedsam"]
    assert "not on this computer" in summary["skipped"]["dino_vitb16"]
    for view in ("view_000", "view_001"):
        assert np.load(out / "litemedsam" / f"{view}_attention.npy").shape == (10, 64, 64)
        assert len(list((out / "litemedsam").glob(f"{view}_head*.png"))) == 10
        assert read_rgb(out / "litemedsam" / f"{view}_threshold.png").shape == (96, 96, 3)
    assert read_rgb(out / "litemedsam" / "grid.png").shape[0] == 14 + 2 * 128  # title row + a row per capture
    with open(out / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["model"] for r in rows} == {"litemedsam"} and {"hip_left", "hip_right"} <= {r["segment"] for r in rows}
    assert all(0.0 <= float(r["auroc"]) <= 1.0 for r in rows)
    visible = {int(v) for v in np.unique(read_label_png(captures / "labels_000.png")) if v}
    assert {int(r["label"]) for r in rows if r["view"] == "view_000"} <= visible
    with open(out / "heads.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 10
    page = (out / "index.html").read_text()
    assert "litemedsam/grid.png" in page and "dino_vitb16" in page

    # no model with weights: reported, not a crash
    assert main(["probe", str(captures), "--models", "dino_vitb16,sam_vit_b", "--out", str(tmp_path / "none")]) == 1
    assert sorted(json.loads((tmp_path / "none" / "summary.json").read_text())["skipped"]) == ["dino_vitb16", "sam_vit_b"]


def test_three_balls(tmp_path, no_downloaded_weights):
    assert main(["three-balls", "--out", str(tmp_path), "--models", "litemedsam,clip_vitb16", "--size", "96"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    sensitivity = summary["models"]["litemedsam"]["colour_sensitivity_mean"]
    assert 0.0 < sensitivity < 1.0 and "clip_vitb16" in summary["skipped"]
    with open(tmp_path / "three_balls.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 10 and {r["model"] for r in rows} == {"litemedsam"}
    # the experiment itself: same balls and camera, three hues vs one hue
    labels = read_label_png(tmp_path / "multi_colour" / "labels_000.png")
    np.testing.assert_array_equal(labels, read_label_png(tmp_path / "single_colour" / "labels_000.png"))
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    multi, single = (read_rgb(tmp_path / c / "view_000.png").astype(float) for c in ("multi_colour", "single_colour"))
    dominant = [int(multi[labels == ball].mean(axis=0).argmax()) for ball in (1, 2, 3)]
    assert dominant == [0, 1, 2]  # red, green, blue
    single_means = np.array([single[labels == ball].mean(axis=0) for ball in (1, 2, 3)])
    assert np.ptp(single_means, axis=0).max() < 12  # one colour for all three
