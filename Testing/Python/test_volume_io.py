"""Volume geometry and file I/O on real files, checked against independent readers (nibabel, pynrrd)."""
from __future__ import annotations

import shutil

import nibabel as nib
import nrrd
import numpy as np
import pytest
import SimpleITK as sitk

from vfmlab.errors import InputError
from vfmlab.volume_io import read_labels, read_volume, write_volume
from vfmlab.volume import Volume


def rotation(axis: int, degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    a, b = [n for n in range(3) if n != axis]
    r = np.eye(3)
    r[a, a], r[a, b], r[b, a], r[b, b] = c, -s, s, c
    return r


@pytest.fixture
def oblique_flipped() -> Volume:
    """Axes flipped in I and K, rotated about two axes, anisotropic spacing, asymmetric content."""
    direction = rotation(2, 17.0) @ rotation(0, -31.0) @ np.diag([-1.0, 1.0, -1.0])
    array = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    return Volume(array, (0.7, 1.3, 2.9), (12.5, -40.25, 7.125), direction, name="oblique")


def test_ijk_to_ras_is_direction_times_spacing_plus_origin(oblique_flipped):
    v = oblique_flipped
    m = v.ijk_to_ras
    # Voxel (1, 0, 0) lies one I-spacing along the first direction column from the origin.
    np.testing.assert_allclose(v.ijk_to_ras_points([1, 0, 0])[0], np.array(v.origin) + 0.7 * v.direction[:, 0])
    np.testing.assert_allclose(v.ras_to_ijk_points(v.ijk_to_ras_points([[2, 3, 1]])), [[2, 3, 1]], atol=1e-12)
    rebuilt = Volume.from_ijk_to_ras(v.array, m)
    np.testing.assert_allclose(rebuilt.ijk_to_ras, m, atol=1e-12)
    assert rebuilt.shape_ijk == (6, 5, 4)


def test_volume_refuses_non_3d_arrays():
    with pytest.raises(InputError, match="3D"):
        Volume(np.zeros((3, 4)))
    with pytest.raises(InputError, match="3D"):
        Volume(np.zeros((2, 3, 4, 5)))


def test_real_nifti_geometry_matches_nibabel(shared_data):
    path = shared_data / "totalseg" / "example_ct.nii.gz"
    volume = read_volume(path)
    assert volume.shape_ijk == (122, 101, 112)
    assert volume.spacing == pytest.approx((3.0, 3.0, 3.0))
    reference = nib.load(path)  # nibabel's affine is voxel (i, j, k) → RAS+, independent of ITK
    np.testing.assert_allclose(volume.ijk_to_ras, reference.affine, atol=1e-4)
    np.testing.assert_array_equal(volume.array, np.asarray(reference.dataobj).transpose(2, 1, 0))


def test_real_nrrd_geometry_matches_pynrrd(shared_data):
    path = shared_data / "vtkdata" / "headsq_quarter.nrrd"
    volume = read_volume(path)
    data, header = nrrd.read(str(path))  # pynrrd returns (I, J, K) arrays
    np.testing.assert_array_equal(volume.array, data.transpose(2, 1, 0))
    assert volume.shape_ijk == data.shape


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz", ".mha"])
def test_round_trip_keeps_geometry_and_voxels(tmp_path, oblique_flipped, suffix):
    path = write_volume(oblique_flipped, tmp_path / f"v{suffix}")
    back = read_volume(path)
    np.testing.assert_array_equal(back.array, oblique_flipped.array)
    # NIfTI stores its affine as float32; NRRD and MHA keep doubles.
    atol = 1e-5 if suffix == ".nii.gz" else 1e-9
    np.testing.assert_allclose(back.ijk_to_ras, oblique_flipped.ijk_to_ras, atol=atol)
    assert not list(tmp_path.glob(".*")), "temporary files left behind"


def test_written_nifti_affine_is_ras_for_nibabel(tmp_path, oblique_flipped):
    path = write_volume(oblique_flipped, tmp_path / "v.nii.gz")
    np.testing.assert_allclose(nib.load(path).affine, oblique_flipped.ijk_to_ras, atol=1e-5)


def test_written_nrrd_header_is_lps(tmp_path, oblique_flipped):
    path = write_volume(oblique_flipped, tmp_path / "v.nrrd")
    _, header = nrrd.read(str(path))
    assert header["space"] == "left-posterior-superior"
    lps = np.diag([-1.0, -1.0, 1.0])
    np.testing.assert_allclose(header["space origin"], lps @ np.array(oblique_flipped.origin), atol=1e-9)
    # pynrrd lists one row per axis: the axis direction scaled by its spacing.
    expected = (lps @ oblique_flipped.direction * np.array(oblique_flipped.spacing)).T
    np.testing.assert_allclose(header["space directions"], expected, atol=1e-9)


def test_real_round_trip_of_every_format(tmp_path, shared_data):
    for source in [
        shared_data / "totalseg" / "example_ct.nii.gz",
        shared_data / "vtkdata" / "HeadMRVolume.mhd",
        shared_data / "pyradiomics" / "breast1_image.nrrd",
    ]:
        original = read_volume(source)
        for suffix in (".nrrd", ".nii.gz"):
            back = read_volume(write_volume(original, tmp_path / f"{source.name}{suffix}"))
            np.testing.assert_array_equal(back.array, original.array)
            np.testing.assert_allclose(back.ijk_to_ras, original.ijk_to_ras, atol=1e-5)


def test_dicom_series_matches_its_nrrd_export(shared_data):
    dicom = read_volume(shared_data / "dcmqi_ct3slice" / "ct-3slice")
    nrrd_volume = read_volume(shared_data / "dcmqi_ct3slice" / "ct3slice.nrrd")
    assert dicom.shape_ijk == (512, 512, 3)
    np.testing.assert_array_equal(dicom.array, nrrd_volume.array)
    np.testing.assert_allclose(dicom.ijk_to_ras, nrrd_volume.ijk_to_ras, atol=1e-3)


def test_dicom_head_series(shared_data):
    volume = read_volume(shared_data / "slicer_ctheaddicom" / "dicom")
    assert volume.shape_ijk == (64, 64, 93)
    assert volume.spacing == pytest.approx((3.2, 3.2, 1.5), abs=1e-3)


def test_mixed_dicom_folder_names_both_series(tmp_path, shared_data):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for source in (shared_data / "dcmqi_ct3slice" / "ct-3slice").iterdir():
        shutil.copy(source, mixed / f"a_{source.name}")
    for source in list((shared_data / "slicer_ctheaddicom" / "dicom").iterdir())[:5]:
        shutil.copy(source, mixed / f"b_{source.name}")
    with pytest.raises(InputError, match="holds 2 DICOM series") as caught:
        read_volume(mixed)
    assert str(mixed) in str(caught.value)
    uid = next(iter(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(mixed))))
    assert read_volume(mixed, series_uid=uid).array.ndim == 3


def test_2d_image_is_refused(shared_data):
    png = next((shared_data / "sammed2d_demo" / "images").glob("*.png"))
    with pytest.raises(InputError, match="2D image") as caught:
        read_volume(png)
    assert png.name in str(caught.value)


def test_4d_and_vector_volumes_are_refused(tmp_path):
    frame = sitk.GetImageFromArray(np.zeros((3, 4, 5), np.float32))
    four_d = tmp_path / "t.nrrd"
    sitk.WriteImage(sitk.JoinSeries([frame, frame]), str(four_d))
    with pytest.raises(InputError, match="4D image"):
        read_volume(four_d)
    vector = tmp_path / "vec.nrrd"
    sitk.WriteImage(sitk.Compose(frame, frame, frame), str(vector))
    with pytest.raises(InputError, match="3 components"):
        read_volume(vector)


def test_nan_voxels_are_refused_with_count(tmp_path):
    array = np.zeros((3, 4, 5), np.float32)
    array[1, 2, 3] = np.nan
    array[0, 0, 0] = np.inf
    path = write_volume(Volume(array), tmp_path / "nan.nrrd")
    with pytest.raises(InputError, match="2 NaN or infinite"):
        read_volume(path)
    assert np.isnan(read_volume(path, allow_nan=True).array[1, 2, 3])


def test_empty_truncated_and_missing_files(tmp_path, shared_data):
    empty = tmp_path / "empty.nrrd"
    empty.touch()
    with pytest.raises(InputError, match="empty file"):
        read_volume(empty)
    source = (shared_data / "vtkdata" / "headsq_quarter.nrrd").read_bytes()
    truncated = tmp_path / "truncated.nrrd"
    truncated.write_bytes(source[: len(source) // 2])
    with pytest.raises(InputError, match="truncated"):
        read_volume(truncated)
    garbage = tmp_path / "garbage.nii.gz"
    garbage.write_bytes(b"not an image at all" * 10)
    with pytest.raises(InputError, match="cannot be read"):
        read_volume(garbage)
    with pytest.raises(InputError, match="does not exist"):
        read_volume(tmp_path / "nope.nrrd")


def test_huge_volume_is_refused_before_loading(shared_data):
    with pytest.raises(InputError, match="more than the limit"):
        read_volume(shared_data / "totalseg" / "example_ct.nii.gz", max_voxels=1000)


def test_labels_must_match_the_volume(tmp_path, shared_data):
    ct = read_volume(shared_data / "totalseg" / "example_ct.nii.gz")
    labels = read_labels(shared_data / "totalseg" / "example_seg_fast_force_split.nii.gz", ct)
    assert labels.shape == ct.array.shape and labels.max() == 117
    with pytest.raises(InputError, match="label array has shape"):
        read_labels(shared_data / "totalseg" / "example_seg.nii.gz", ct)
    shifted = Volume(labels, ct.spacing, (ct.origin[0] + 5, *ct.origin[1:]), ct.direction)
    moved = write_volume(shifted, tmp_path / "moved.nii.gz")
    with pytest.raises(InputError, match="geometry differs"):
        read_labels(moved, ct)


def test_failed_write_keeps_the_existing_file(tmp_path, oblique_flipped, monkeypatch):
    target = write_volume(oblique_flipped, tmp_path / "keep.nrrd")
    before = target.read_bytes()

    def broken_write(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(sitk, "WriteImage", broken_write)
    with pytest.raises(RuntimeError):
        write_volume(oblique_flipped.with_array(oblique_flipped.array * 2), target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.nrrd"]
    with pytest.raises(InputError, match="cannot write"):
        write_volume(oblique_flipped, tmp_path / "v.png")


def test_failed_checkpoint_save_keeps_the_previous_checkpoint(tmp_path):
    import torch

    from vfmlab.atomic import save_torch

    target = save_torch({"epoch": 1, "weights": torch.ones(3)}, tmp_path / "last.pt")
    with pytest.raises(Exception):  # a lambda cannot be pickled: the save fails midway
        save_torch({"epoch": 2, "weights": torch.zeros(3), "hook": lambda: None}, target)
    state = torch.load(target, weights_only=True)
    assert state["epoch"] == 1 and torch.equal(state["weights"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_json_records_take_numpy_values_and_keep_the_old_file_on_error(tmp_path):
    import json

    from vfmlab.atomic import write_json

    path = write_json(tmp_path / "summary.json", {"slices": [np.int64(82), np.int64(111)], "passed": np.bool_(True),
                                                  "dice": np.float32(0.5), "box": np.arange(3), "file": tmp_path})
    assert json.loads(path.read_text()) == {"slices": [82, 111], "passed": True, "dice": 0.5, "box": [0, 1, 2],
                                            "file": str(tmp_path)}
    with pytest.raises(TypeError, match="set"):
        write_json(path, {"segments": {"liver"}})
    assert json.loads(path.read_text())["slices"] == [82, 111]
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]
