"""Pictures for reports: orthogonal slices with label overlays, in radiological display convention."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .volume import Volume


def closest_ras_array(volume: Volume, array: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``array`` (default: the voxels) re-indexed as ``[R, A, S]`` by axis permutation and flips only.

    Returns the re-indexed array and the spacing along R, A, S. No resampling: an oblique volume is
    shown along its nearest anatomical axes, which is what a report thumbnail needs.
    """
    data = (volume.array if array is None else array).transpose(2, 1, 0)  # (I, J, K)
    axis_of = np.abs(volume.direction).argmax(axis=0)  # RAS axis each of I, J, K runs along
    if len(set(axis_of.tolist())) != 3:
        axis_of = np.array([0, 1, 2])
    order = np.argsort(axis_of)  # which of I, J, K runs along R, A, S
    data = data.transpose(order)
    for ras_axis, ijk_axis in enumerate(order):
        if volume.direction[ras_axis, ijk_axis] < 0:
            data = np.flip(data, axis=ras_axis)
    return data, np.asarray(volume.spacing)[order]


def orthogonal_overlay_png(
    volume: Volume,
    path: str | Path,
    labels: np.ndarray | None = None,
    colors: dict[int, tuple[float, float, float]] | None = None,
    window: tuple[float, float] = (-160.0, 240.0),
    center_ras_index: tuple[int, int, int] | None = None,
) -> Path:
    """Axial, coronal and sagittal slices side by side, labels blended in their colours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image, spacing = closest_ras_array(volume)
    label_image = closest_ras_array(volume, labels)[0] if labels is not None else None
    center = center_ras_index or tuple(s // 2 for s in image.shape)
    low, high = window
    grey = np.clip((image.astype(np.float32) - low) / (high - low), 0, 1)
    # As Slicer shows them: axial/coronal with patient right on screen left, sagittal with anterior on the left.
    views = [
        ("axial", lambda a: a[:, :, center[2]].T[::-1, ::-1], spacing[1] / spacing[0]),
        ("coronal", lambda a: a[:, center[1], :].T[::-1, ::-1], spacing[2] / spacing[0]),
        ("sagittal", lambda a: a[center[0], :, :].T[::-1, ::-1], spacing[2] / spacing[1]),
    ]
    figure, axes = plt.subplots(1, 3, figsize=(12, 4.4), dpi=100)
    for axis, (title, take, aspect) in zip(axes, views):
        rgb = np.repeat(take(grey)[..., None], 3, axis=2)
        if label_image is not None:
            lab = take(label_image)
            for value, color in (colors or {}).items():
                where = lab == value
                rgb[where] = 0.45 * rgb[where] + 0.55 * np.asarray(color)
        axis.imshow(rgb, aspect=aspect, interpolation="nearest")
        axis.set_title(title)
        axis.set_axis_off()
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path)
    plt.close(figure)
    return path
