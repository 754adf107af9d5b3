"""Key slices of one volume end to end: score, select, fuse, and the files ``vfmlab slices`` writes.

``OUT/scores.csv`` (one row per slice: components, score, chosen), ``OUT/selection.json`` (the chosen
indices, their coverage and the config), ``OUT/strip.png`` (the score along the axis over the chosen
slices' thumbnails), ``OUT/features.npy`` and ``OUT/descriptor.npy`` (for ``vfmlab slices-similar``).
"""
from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..atomic import write_json
from ..slices import SliceStack
from ..volume import Volume
from .config import COMPONENTS, KeySliceConfig
from .fusion import volume_descriptor
from .scoring import SliceScores, score_slices
from .selection import Selection, select_slices

SCORES_CSV, SELECTION_JSON, STRIP_PNG = "scores.csv", "selection.json", "strip.png"
FEATURES_NPY, DESCRIPTOR_NPY = "features.npy", "descriptor.npy"


@dataclass
class KeySlices:
    scores: SliceScores
    selection: Selection
    descriptor: np.ndarray


def segment_presence(volume: Volume, axis: str, labels: np.ndarray, names: dict[int, str]) -> dict[str, np.ndarray]:
    """name -> ``(N,)`` bool: on which slices along ``axis`` each labelled structure appears."""
    shown = SliceStack.of(volume, axis).view(labels)
    values = [int(v) for v in np.unique(labels) if v != 0]
    return {names.get(value, f"label {value}"): (shown == value).any(axis=(1, 2)) for value in values}


def key_slices(volume: Volume, config: KeySliceConfig, probe, labels: np.ndarray | None = None,
               names: dict[int, str] | None = None, progress: Callable[[int, int], None] | None = None) -> KeySlices:
    """Score, choose and fuse; ``labels``: a label map on the volume's grid (segment component and coverage)."""
    scores = score_slices(volume, config, probe, labels, progress)
    segments = segment_presence(volume, config.axis, labels, names or {}) if labels is not None else None
    selection = select_slices(scores, config, segments)
    return KeySlices(scores, selection, volume_descriptor(scores.features, selection.indices, scores.total))


def labelling_order(images: np.ndarray, config: KeySliceConfig = KeySliceConfig(), probe=None) -> np.ndarray:
    """Every slice of ``images`` ``(N, rows, cols)`` in [0, 1], the most worth labelling first: maximal marginal
    relevance over the image-only scores (no segment component: nothing is labelled yet)."""
    from ..probes.registry import build_probe
    from .scoring import combine, image_components
    from .selection import diverse_order

    components, features = image_components(images, probe or build_probe(config.model), config.foreground_level)
    total = combine(components, config.weights)
    return np.asarray(diverse_order(total, features, len(images), config.diversity, config.min_gap(len(images))))


def write_outputs(out: str | Path, result: KeySlices, config: KeySliceConfig, volume: Volume,
                  source: str | None = None) -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    chosen = set(result.selection.indices)
    with open(out / SCORES_CSV, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        present = [name for name in COMPONENTS if name in result.scores.components]
        writer.writerow(["slice", *present, "score", "chosen"])
        for index in range(len(result.scores)):
            writer.writerow([index, *(f"{result.scores.components[name][index]:.6g}" for name in present),
                             f"{result.scores.total[index]:.6g}", int(index in chosen)])
    write_json(out / SELECTION_JSON, {"source": source, "axis": config.axis, **result.selection.to_dict(),
                                      "config": asdict(config)})
    np.save(out / FEATURES_NPY, result.scores.features.astype(np.float32))
    np.save(out / DESCRIPTOR_NPY, result.descriptor.astype(np.float32))
    strip_image(out / STRIP_PNG, result, volume)
    return {name: out / name for name in (SCORES_CSV, SELECTION_JSON, STRIP_PNG, FEATURES_NPY, DESCRIPTOR_NPY)}


def strip_image(path: Path, result: KeySlices, volume: Volume, columns: int = 10) -> Path:
    """The score along the axis (chosen slices marked) above the chosen slices' thumbnails."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stack = SliceStack.of(volume, result.scores.axis)
    images = result.scores.window.apply(stack.view(volume.array)[result.selection.indices])
    rows = -(-len(images) // columns)
    figure = plt.figure(figsize=(1.6 * min(columns, len(images)) + 1, 2.2 + 1.7 * rows))
    grid = figure.add_gridspec(rows + 1, min(columns, len(images)), height_ratios=[1.3] + [1.0] * rows)
    curve = figure.add_subplot(grid[0, :])
    curve.plot(result.scores.total, color="0.3")
    curve.scatter(result.selection.indices, result.scores.total[result.selection.indices], color="tab:red", zorder=3)
    curve.set_xlabel(f"{result.scores.axis} slice")
    curve.set_ylabel("score")
    for n, (index, image) in enumerate(zip(result.selection.indices, images)):
        axes = figure.add_subplot(grid[1 + n // columns, n % columns])
        axes.imshow(image, cmap="gray", vmin=0, vmax=1, aspect=stack.pixel_spacing[0] / stack.pixel_spacing[1])
        axes.set_title(str(index), fontsize=9)
        axes.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def load_outputs(folder: str | Path) -> tuple[dict, np.ndarray]:
    """``(selection.json, descriptor)`` of an earlier ``vfmlab slices`` output folder."""
    folder = Path(folder)
    return json.loads((folder / SELECTION_JSON).read_text(encoding="utf-8")), np.load(folder / DESCRIPTOR_NPY)
