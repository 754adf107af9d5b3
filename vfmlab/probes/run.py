"""Probe a capture folder (or one PNG) with several models: maps, pictures, metrics, summary and report.

Output folder::

    summary.json                 models run / skipped (why), their maps' geometry, timings, head tables
    metrics.csv                  model, view, head, label, segment, cells, auroc   (when segment IDs exist)
    heads.csv                    model, head, best_segment, best_auroc, entropy
    index.html                   the report: per model its grid and head table
    <model>/<view>_attention.npy (heads, h, w) float32 attention on the model's grid over the capture
    <model>/<view>_head<NN>.png  each head's map as a heatmap at capture resolution; ``_mean.png`` the average
    <model>/<view>_threshold.png DINO's threshold mode: each head's top-``keep`` attention mass, tinted
    <model>/grid.png             captures x (capture, head overlays, mean)
"""
from __future__ import annotations

import csv
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import write_json
from ..cameras import CAMERAS_FILE, CaptureSet
from ..errors import InputError, WeightsError
from ..render.images import read_label_png, read_rgb, write_rgb_png
from . import maps as pictures
from . import metrics
from .base import AttentionProbe
from .config import ProbeConfig
from .registry import build_probe, get_spec, weights_status

METRIC_FIELDS = ["model", "view", "head", "label", "segment", "cells", "auroc"]
HEAD_FIELDS = ["model", "head", "best_label", "best_segment", "best_auroc", "entropy"]


@dataclass
class ProbeInput:
    """One capture to probe, with its segment IDs when the capture folder has them."""

    name: str
    rgb: np.ndarray
    labels: np.ndarray | None = None


def load_inputs(source: str | Path) -> tuple[list[ProbeInput], dict[int, str]]:
    """Captures of a folder (``cameras.json`` order, else every PNG but ``labels_*``) or of one PNG file.

    Returns the inputs and label value → segment name (empty without segment IDs).
    """
    source = Path(source)
    if not source.exists():
        raise InputError("does not exist", source)
    folder = source if source.is_dir() else source.parent
    names: dict[int, str] = {}
    labels_of: dict[str, str | None] = {}
    if (folder / CAMERAS_FILE).is_file():
        capture = CaptureSet.load(folder)
        labels_of = {view.image: view.labels_image for view in capture.views}
        names = {int(v): s.get("name", f"Label {v}") for v, s in capture.labels.get("segments", {}).items()}
    if source.is_dir():
        images = list(labels_of) or sorted(p.name for p in folder.glob("*.png") if not p.name.startswith("labels_"))
    else:
        images = [source.name]
    if not images:
        raise InputError("holds no captures (PNG files); render some with 'vfmlab render' first", source)
    inputs = []
    for image in images:
        rgb = read_rgb(folder / image)
        labels_name = labels_of.get(image)
        labels = read_label_png(folder / labels_name) if labels_name else None
        if labels is not None and labels.shape != rgb.shape[:2]:
            raise InputError(f"segment IDs {labels.shape} do not match the capture {rgb.shape[:2]}",
                             folder / labels_name)
        inputs.append(ProbeInput(Path(image).stem, rgb, labels))
    return inputs, names


def _probe_for(model: str, local: str | Path | None, input_size: int | None,
               built: dict[str, AttentionProbe] | None) -> AttentionProbe:
    """The probe from ``built`` when it is there, else built now (and added to ``built``)."""
    probe = (built or {}).get(model)
    if probe is None:
        probe = build_probe(model, local, input_size)
        if built is not None:
            built[model] = probe
    return probe


def probe_captures(
    source: str | Path,
    models: list[str],
    out_dir: str | Path,
    *,
    input_size: int | None = ProbeConfig.input_size,
    keep: float = ProbeConfig.keep,
    weights_files: dict[str, str | Path] | None = None,
    tile: int = ProbeConfig.tile,
    progress: Callable[[float, str], None] | None = None,
    built: dict[str, AttentionProbe] | None = None,
) -> dict:
    """Run each model on each capture and write the outputs (see the module docstring); returns the summary.

    A model whose weights are not on this machine is reported under ``skipped`` and left out. ``built``
    caches probes across calls: probes found there are reused, the ones built here are added.
    """
    inputs, names = load_inputs(source)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for model in models:
        get_spec(model)
    report = progress or (lambda fraction, message: None)
    summary: dict = {"source": str(Path(source).resolve()), "captures": [i.name for i in inputs], "models": {},
                     "skipped": {}, "keep_mass": keep, "segments": {str(k): v for k, v in names.items()}}
    metric_rows: list[dict] = []
    head_rows: list[dict] = []
    steps = max(1, len(models) * len(inputs))
    for m_index, model in enumerate(models):
        local = (weights_files or {}).get(model)
        available, where = weights_status(model, local)
        if not available:
            summary["skipped"][model] = where
            continue
        report(m_index * len(inputs) / steps, f"{model}: loading weights")
        try:
            probe = _probe_for(model, local, input_size, built)
        except WeightsError as error:
            summary["skipped"][model] = str(error)
            continue
        result = _probe_one_model(probe, inputs, out_dir / model, names, keep, tile,
                                  lambda n: report((m_index * len(inputs) + n) / steps,
                                                   f"{model}: capture {n + 1}/{len(inputs)}"))
        result["weights"] = where
        metric_rows += result.pop("metric_rows")
        head_rows += [{"model": model, **row} for row in result["heads"]]
        summary["models"][model] = result
    report(1.0, "writing tables and report")
    if metric_rows:
        _write_csv(out_dir / "metrics.csv", METRIC_FIELDS, metric_rows)
    if head_rows:
        _write_csv(out_dir / "heads.csv", HEAD_FIELDS, head_rows)
    write_json(out_dir / "summary.json", summary)
    from .report import write_probe_report

    write_probe_report(out_dir, summary)
    return summary


def _probe_one_model(probe, inputs: list[ProbeInput], folder: Path, names: dict[int, str], keep: float, tile: int,
                     step: Callable[[int], None]) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    rows, entropies, grid_rows, seconds = [], {}, [], []
    info = None
    for index, item in enumerate(inputs):
        step(index)
        start = time.perf_counter()
        attention = probe.attention(item.rgb)
        seconds.append(time.perf_counter() - start)
        info = attention.info()
        np.save(folder / f"{item.name}_attention.npy", attention.heads)
        for head, map_ in enumerate(attention.heads):
            write_rgb_png(folder / f"{item.name}_head{head:02d}.png", pictures.heatmap(map_, attention.image_size))
        write_rgb_png(folder / f"{item.name}_mean.png", pictures.heatmap(attention.mean, attention.image_size))
        masks = pictures.threshold_mass(attention.heads, keep)
        write_rgb_png(folder / f"{item.name}_threshold.png", pictures.threshold_overlay(item.rgb, masks))
        grid_rows.append((item.rgb, attention.heads))
        for head, value in enumerate(metrics.attention_entropy(attention.heads)):
            entropies.setdefault(head, []).append(float(value))
        if item.labels is not None:
            cells = metrics.cell_labels(item.labels, attention.grid)
            aurocs = metrics.segment_aurocs(attention.heads, cells)
            rows += metrics.auroc_rows(probe.name, item.name, aurocs, cells, names)
    write_rgb_png(folder / "grid.png", pictures.grid_image(grid_rows, tile, row_titles=[i.name for i in inputs]))
    heads = metrics.head_table(rows, entropies, names)
    return {
        "attention": info,
        "seconds_per_capture": float(np.mean(seconds)),
        "heads": heads,
        "summary": metrics.model_summary(heads) if rows else None,
        "grid": f"{folder.name}/grid.png",
        "metric_rows": rows,
    }


def _write_csv(path: Path, fields: list[str], rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
