"""The ``vfmlab`` command line and the demo, through the installed entry point and in-process."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import slicerio

from vfmlab import mrml, sample_data
from vfmlab.cli import main
from vfmlab.volume_io import read_labels, read_volume

VFMLAB = str(Path(sys.executable).with_name("vfmlab"))


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([VFMLAB, *args], capture_output=True, text=True, timeout=120)


def test_help_lists_the_subcommands():
    result = run_cli("--help")
    assert result.returncode == 0
    assert "info" in result.stdout and "demo" in result.stdout and "COMMAND --help" in result.stdout


def test_info_prints_geometry_json_for_a_file_and_a_dicom_folder(shared_data):
    path = shared_data / "totalseg" / "example_ct.nii.gz"
    result = run_cli("info", str(path))
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["shape_ijk"] == [122, 101, 112]
    np.testing.assert_allclose(info["ijk_to_ras"], nib.load(path).affine, atol=1e-4)
    assert info["dtype"] == "int32" and info["value_range"][0] < -1000 < 1000 < info["value_range"][1]
    dicom = json.loads(run_cli("info", str(shared_data / "slicer_ctheaddicom" / "dicom")).stdout)
    assert dicom["shape_ijk"] == [64, 64, 93]


@pytest.mark.parametrize(
    "make_input, message",
    [
        (lambda d, tmp: next((d / "sammed2d_demo" / "images").glob("*.png")), "2D image"),
        (lambda d, tmp: tmp / "missing.nrrd", "does not exist"),
        (lambda d, tmp: _truncated(d, tmp), "truncated"),
    ],
)
def test_bad_input_gives_one_line_and_nonzero_exit(shared_data, tmp_path, make_input, message):
    path = make_input(shared_data, tmp_path)
    result = run_cli("info", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0] and path.name in lines[0] and "Traceback" not in result.stderr


def _truncated(shared_data: Path, tmp_path: Path) -> Path:
    data = (shared_data / "vtkdata" / "headsq_quarter.nrrd").read_bytes()
    path = tmp_path / "cut.nrrd"
    path.write_bytes(data[: len(data) // 3])
    return path


def test_bundled_sample_is_the_totalsegmentator_ct(shared_data):
    sample = read_volume(sample_data.sample_ct_path())
    original = read_volume(shared_data / "totalseg" / "example_ct.nii.gz")
    np.testing.assert_array_equal(sample.array, original.array)
    names = sample_data.sample_label_names()
    labels = read_labels(sample_data.sample_labels_path(), sample)
    assert set(np.unique(labels)) - {0} == set(names) and names[5] == "liver"
    assert (sample_data.sample_data_dir() / "LICENSE_TotalSegmentator_Apache2.txt").is_file()


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--out", str(out), "--fast"]) == 0
    return out


def test_demo_writes_a_scene_that_reloads_with_same_geometry_and_segments(demo_dir):
    files = {p.name for p in demo_dir.iterdir()}
    assert {"scene.mrml", "VFMSampleCT.nrrd", "VFMSampleCT.seg.nrrd", "index.html", "slices.png", "summary.json"} <= files
    assert not [name for name in files if name.startswith(".")], "staging folder left behind"
    scene = mrml.load_scene(demo_dir / "scene.mrml")
    volume_node = scene.GetFirstNodeByName("VFMSampleCT")
    reloaded = mrml.volume_from_node(volume_node)
    sample = read_volume(sample_data.sample_ct_path())
    np.testing.assert_array_equal(reloaded.array, sample.array)
    np.testing.assert_allclose(reloaded.ijk_to_ras, sample.ijk_to_ras, atol=1e-6)
    segmentation = scene.GetFirstNodeByClass("vtkMRMLSegmentationNode")
    expected_names = set(sample_data.sample_label_names().values())
    assert set(mrml.segment_names(segmentation).values()) == expected_names
    ids = {name: sid for sid, name in mrml.segment_names(segmentation).items()}
    labels = read_labels(sample_data.sample_labels_path(), sample)
    np.testing.assert_array_equal(mrml.segment_mask(segmentation, ids["spleen"], volume_node), labels == 1)
    by_slicerio = slicerio.read_segmentation(str(demo_dir / "VFMSampleCT.seg.nrrd"))
    assert {s["name"] for s in by_slicerio["segments"]} == expected_names


def test_demo_report_and_summary(demo_dir):
    summary = json.loads((demo_dir / "summary.json").read_text())
    assert all(summary["checks"].values()) and len(summary["checks"]) >= 4
    liver = next(s for s in summary["segments"] if s["name"] == "liver")
    assert liver["volume_ml"] == pytest.approx(liver["voxels"] * 27 / 1000)
    page = (demo_dir / "index.html").read_text()
    assert 'src="slices.png"' in page and "liver" in page and "FAIL" not in page


def test_failed_demo_writes_nothing(tmp_path, shared_data):
    out = tmp_path / "out"
    png = next((shared_data / "sammed2d_demo" / "images").glob("*.png"))
    result = run_cli("demo", "--out", str(out), "--volume", str(png))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert errors == [result.stderr.strip().splitlines()[-1]] and "2D image" in errors[0]
    assert not out.exists() or not any(out.iterdir())


def test_sample_data_missing_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("VFMLAB_SAMPLE_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(Exception, match="VFMLAB_SAMPLE_DATA"):
        sample_data.sample_ct_path()


def test_demo_exits_nonzero_and_names_a_failed_check(tmp_path, monkeypatch, capsys):
    import vfmlab.demo

    def demo_with_a_failed_check(out_dir, inputs, progress, fast):
        return {"scene": "scene.mrml", "checks": {"volume geometry identical after reload": True,
                                                  "LiteMedSAM spleen: propagated Dice above 0.8": False}}

    monkeypatch.setattr(vfmlab.demo, "run_demo", demo_with_a_failed_check)
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 1
    error = capsys.readouterr().err
    assert "LiteMedSAM spleen" in error and "geometry" not in error
