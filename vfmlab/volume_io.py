"""Reading and writing volumes and label maps with SimpleITK, geometry kept exactly.

Readers check the header before loading voxels, so a 2D image, a 4D or vector volume, or a volume
too large for memory is refused with a message naming the file, and nothing is loaded half-way.
Writers write to a temporary file beside the target and rename it, so a failed write never leaves
a truncated file under the requested name.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .atomic import atomic_path
from .errors import InputError
from .volume import Volume

READ_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd", ".dcm")
WRITE_SUFFIXES = (".nrrd", ".nii", ".nii.gz", ".mha")
# 1024 x 1024 x 1024 voxels: beyond this a desktop session runs out of memory in the models.
DEFAULT_MAX_VOXELS = int(os.environ.get("VFMLAB_MAX_VOXELS", 1024**3))


def full_suffix(path: Path) -> str:
    """``.nii.gz`` for compressed NIfTI, else the last suffix, lower case."""
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def stem(path: Path) -> str:
    """File name without its (double) extension; ``.seg.nrrd`` counts as one extension."""
    name = Path(path).name
    for suffix in (".seg.nrrd", ".nii.gz") + READ_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def dicom_series(folder: Path) -> dict[str, list[str]]:
    """Series instance UID → sorted file names of each DICOM series found directly in ``folder``."""
    reader = sitk.ImageSeriesReader
    uids = reader.GetGDCMSeriesIDs(str(folder))
    return {uid: list(reader.GetGDCMSeriesFileNames(str(folder), uid)) for uid in uids}


def _read_header(path: Path) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise InputError(
            f"cannot be read as an image ({_first_line(error)}); the file may be truncated, corrupt or not "
            f"an image. Readable formats: {', '.join(READ_SUFFIXES)} and DICOM folders",
            path,
        ) from None
    return reader


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    # ITK puts the useful sentence last, after file/line noise.
    return lines[-1] if lines else type(error).__name__


def _check_header(path: Path, dimension: int, size: tuple[int, ...], components: int, max_voxels: int) -> None:
    if dimension == 2 or (dimension == 3 and size[2] == 1 and components > 1):
        raise InputError(f"is a 2D image of size {size[:2]}; a 3D volume is needed", path)
    if dimension != 3:
        raise InputError(
            f"is a {dimension}D image of size {size}; a scalar 3D volume is needed "
            "(extract one time point or channel first)",
            path,
        )
    if components != 1:
        raise InputError(
            f"has {components} components per voxel (a vector or colour volume); a scalar volume is needed "
            "(convert it to grey values or pick one component first)",
            path,
        )
    voxels = int(np.prod(size))
    if voxels > max_voxels:
        raise InputError(
            f"has {voxels:,} voxels ({' x '.join(map(str, size))}), more than the limit of {max_voxels:,}; "
            "crop or resample it first, or raise VFMLAB_MAX_VOXELS",
            path,
        )


def check_finite(array: np.ndarray, source: str | Path | None = None) -> None:
    """Refuse NaN or infinite voxels: every model and renderer downstream would propagate them."""
    if array.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(array)))
        if bad:
            raise InputError(
                f"contains {bad:,} NaN or infinite voxels; replace them (e.g. with the background value) first",
                source,
            )


def check_volume_file(path: str | Path, max_voxels: int = DEFAULT_MAX_VOXELS) -> None:
    """Header-only check that a file holds a readable scalar 3D volume of acceptable size."""
    path = Path(path)
    if not path.is_file():
        raise InputError("does not exist", path)
    if path.stat().st_size == 0:
        raise InputError("is an empty file", path)
    reader = _read_header(path)
    _check_header(path, reader.GetDimension(), reader.GetSize(), reader.GetNumberOfComponents(), max_voxels)


def _to_volume(image: sitk.Image, path: Path, name: str, allow_nan: bool) -> Volume:
    array = sitk.GetArrayFromImage(image)
    if not allow_nan:
        check_finite(array, path)
    return Volume.from_lps(array, image.GetSpacing(), image.GetOrigin(), image.GetDirection(), name=name)


def read_volume(
    path: str | Path,
    series_uid: str | None = None,
    max_voxels: int = DEFAULT_MAX_VOXELS,
    allow_nan: bool = False,
) -> Volume:
    """Read a scalar 3D volume from NRRD, NIfTI, MHA/MHD, a DICOM file or a DICOM series folder."""
    path = Path(path)
    if not path.exists():
        raise InputError("does not exist", path)
    if path.is_dir():
        return _read_dicom_folder(path, series_uid, max_voxels, allow_nan)
    check_volume_file(path, max_voxels)
    reader = _read_header(path)
    try:
        image = reader.Execute()
    except RuntimeError as error:
        raise InputError(
            f"header is readable but the voxel data is not ({_first_line(error)}); the file is probably truncated",
            path,
        ) from None
    return _to_volume(image, path, stem(path), allow_nan)


def _read_dicom_folder(folder: Path, series_uid: str | None, max_voxels: int, allow_nan: bool) -> Volume:
    series = dicom_series(folder)
    if not series:
        raise InputError("contains no DICOM series (give a folder holding the .dcm files of one series)", folder)
    if series_uid is None:
        if len(series) > 1:
            listing = "; ".join(f"{uid} ({len(files)} files)" for uid, files in series.items())
            raise InputError(
                f"holds {len(series)} DICOM series, choose one with series_uid / --series: {listing}", folder
            )
        series_uid = next(iter(series))
    if series_uid not in series:
        raise InputError(f"has no DICOM series {series_uid}; found {', '.join(series)}", folder)
    files = series[series_uid]
    first = _read_header(Path(files[0]))
    size = (*first.GetSize()[:2], len(files))
    _check_header(folder, 3, size, first.GetNumberOfComponents(), max_voxels)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        image = reader.Execute()
    except RuntimeError as error:
        raise InputError(f"DICOM series {series_uid} cannot be read ({_first_line(error)})", folder) from None
    return _to_volume(image, folder, folder.name, allow_nan)


def to_sitk(volume: Volume) -> sitk.Image:
    image = sitk.GetImageFromArray(volume.array)
    image.SetSpacing(volume.spacing)
    image.SetOrigin(tuple(volume.origin_lps))
    image.SetDirection(tuple(volume.direction_lps.ravel()))
    return image


def write_volume(volume: Volume, path: str | Path, compress: bool = True) -> Path:
    """Write NRRD / NIfTI / MHA atomically; returns the path written."""
    path = Path(path)
    suffix = full_suffix(path)
    if suffix not in WRITE_SUFFIXES:
        raise InputError(f"cannot write '{suffix}' files; use one of {', '.join(WRITE_SUFFIXES)}", path)
    with atomic_path(path, suffix=suffix) as temp:  # SimpleITK picks the writer from the suffix
        sitk.WriteImage(to_sitk(volume), str(temp), compress)
    return path


def read_labels(path: str | Path, reference: Volume, atol: float = 1e-3) -> np.ndarray:
    """Read an integer label map that lies on ``reference``'s voxel grid; returns a ``(K, J, I)`` array."""
    path = Path(path)
    labels = read_volume(path)
    if not labels.same_geometry(reference, atol=atol):
        try:  # the same grid stored in another voxel order (e.g. written from Slicer's view of a left-handed file)
            labels = reference.with_array(labels.array_on_grid(reference.ijk_to_ras, reference.array.shape, atol))
        except InputError as error:
            check_labels(labels.array, reference, path)  # a plain shape mismatch says so first
            raise InputError(f"label map geometry differs from the volume's: {error}", path) from None
    check_labels(labels.array, reference, path)
    return np.ascontiguousarray(labels.array.astype(np.int32, copy=False))


def check_labels(labels: np.ndarray, reference: Volume, source: str | Path | None = None) -> None:
    """Refuse a label array that is not integer-valued or not on the reference's grid."""
    if labels.shape != reference.array.shape:
        raise InputError(
            f"label array has shape {tuple(labels.shape)} (K, J, I) but the volume has {reference.array.shape}",
            source,
        )
    if labels.dtype.kind == "f" and not np.array_equal(labels, np.round(labels)):
        raise InputError("label map has non-integer values; a label map holds integer segment labels", source)
