"""Pictures for reports: orthogonal slices with label overlays, oriented as Slicer shows them."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .slices import AXES, SliceStack
from .volume import Volume


def orthogonal_overlay_png(
    volume: Volume,
    path: str | Path,
    labels: np.ndarray | None = None,
    colors: dict[int, tuple[float, float, float]] | None = None,
    window: tuple[float, float] = (-160.0, 240.0),
    slice_indices: dict[str, int] | None = None,
) -> Path:
    """Axial, coronal and sagittal slices side by side (middle slices by default), labels blended in."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    low, high = window
    grey = np.clip((volume.array.astype(np.float32) - low) / (high - low), 0, 1)
    figure, axes = plt.subplots(1, 3, figsize=(12, 4.4), dpi=100)
    for plot, axis in zip(axes, AXES):
        stack = SliceStack.of(volume, axis)
        index = (slice_indices or {}).get(axis, stack.shape[0] // 2)
        rgb = np.repeat(stack.view(grey)[index][..., None], 3, axis=2)
        if labels is not None:
            label_slice = stack.view(labels)[index]
            for value, color in (colors or {}).items():
                where = label_slice == value
                rgb[where] = 0.45 * rgb[where] + 0.55 * np.asarray(color)
        plot.imshow(rgb, aspect=stack.pixel_spacing[0] / stack.pixel_spacing[1], interpolation="nearest")
        plot.set_title(axis)
        plot.set_axis_off()
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path)
    plt.close(figure)
    return path
