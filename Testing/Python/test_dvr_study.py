"""dvr-study: segment-colourised Slicer renders as targets, every model on the same views, numbers per model."""
from __future__ import annotations

import json

import numpy as np
import pytest

from vfmlab.cli import main
from vfmlab.dvr.config import StudyConfig
from vfmlab.dvr.study import colourised_rgba, run_study, segment_labels
from vfmlab.errors import InputError
from vfmlab.render.capture import RenderSettings, render_file
from vfmlab.render.images import read_rgb
from vfmlab.render.poses import Orbit
from vfmlab.sample_data import sample_ct_path
from vfmlab.volume_io import read_volume, write_volume

SAMPLE_LABELS = sample_ct_path().with_name("VFMSampleCT_labels.nii.gz")


def test_colourised_volume_gives_equal_intensities_different_colours_and_keeps_the_preset_opacity():
    volume = read_volume(sample_ct_path())
    labels, colours = segment_labels(volume, SAMPLE_LABELS)
    rgba = colourised_rgba(volume, labels, colours, "CT-AAA")
    assert rgba.shape == volume.array.shape + (4,) and rgba.dtype == np.uint8
    liver, spleen = (labels == 5), (labels == 1)
    assert np.all(rgba[liver][:, :3] == np.round(np.array(colours[5]) * 255).astype(np.uint8))
    # voxels of one intensity in two segments: a 1D TF would give them one colour, the targets do not
    shared = np.intersect1d(volume.array[liver], volume.array[spleen])
    assert shared.size > 0
    value = shared[len(shared) // 2]
    in_liver = rgba[liver & (volume.array == value)][0]
    in_spleen = rgba[spleen & (volume.array == value)][0]
    assert in_liver[3] == in_spleen[3] and not np.array_equal(in_liver[:3], in_spleen[:3])
    outside = (labels == 0) & (volume.array < -900)
    assert rgba[outside][:, 3].max() == 0  # air: transparent in CT-AAA


def test_study_trains_each_model_on_the_same_targets_and_writes_its_table(tmp_path):
    config = StudyConfig(models=("lookup", "dvrnet"), epochs=2, views=8, size=24, threads=1)
    record = run_study(sample_ct_path(), SAMPLE_LABELS, tmp_path, config)
    assert set(record["models"]) == {"lookup", "dvrnet"}
    for numbers in record["models"].values():
        assert 0 <= numbers["val_ssim"] <= 1 and numbers["val_psnr"] > 0 and numbers["held_out_views"] == 2
    assert record["models"]["dvrnet"]["parameters"] > 10 * record["models"]["lookup"]["parameters"]
    assert json.loads((tmp_path / "study.json").read_text()) == record
    assert (tmp_path / "study.png").stat().st_size > 0
    # The targets show the segments' colours: CT-AAA's own colours (black, red, yellow, white) are never
    # green- or blue-dominant, so such pixels come from the segments (reference: a plain CT-AAA capture).
    render_file(sample_ct_path(), tmp_path / "plain", RenderSettings(preset="CT-AAA", width=24, height=24,
                                                                     shading=False), Orbit(views=8, elevation=20.0))
    assert segment_coloured_share(tmp_path / "captures") > 0.2
    assert segment_coloured_share(tmp_path / "plain") < 0.02


def segment_coloured_share(folder) -> float:
    pixels = np.concatenate([read_rgb(p).reshape(-1, 3) for p in sorted(folder.glob("view_*.png"))]).astype(int)
    lit = pixels[pixels.sum(axis=1) > 60]
    return float(np.mean(np.maximum(lit[:, 1], lit[:, 2]) > lit[:, 0] + 20))


def test_bad_requests_fail_before_any_work(tmp_path):
    empty = tmp_path / "empty.nii.gz"
    volume = read_volume(sample_ct_path())
    write_volume(volume.with_array(np.zeros(volume.array.shape, np.uint8)), empty)
    with pytest.raises(InputError, match="segmentation is empty"):
        run_study(sample_ct_path(), empty, tmp_path / "a", StudyConfig(models=("lookup",)))
    assert main(["dvr-study", str(sample_ct_path()), "--segmentation", str(SAMPLE_LABELS), "--models", "lookup,nope",
                 "--out", str(tmp_path / "b")]) == 2
    assert not (tmp_path / "b").exists()
