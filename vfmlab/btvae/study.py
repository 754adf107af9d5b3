"""Label-ratio study (the paper's experiment 1): every model at 90/70/50/30/10 % labelled slices.

``STUDY_DIR`` receives ``study.csv`` and ``study.json`` (one row per model and ratio: Dice, IoU,
precision, recall, false positives on negative slices), ``study.png`` (Dice against label ratio
per model as in the paper's Figure 2, with the negative-slice false-positive rate beside it), and
the runs themselves under ``pretrain/`` and ``runs/``. The table is rewritten after every run, so a
cancelled study keeps what it finished; ``resume`` skips finished runs.
"""
from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Any

from vfmlab.errors import InputError, VfmlabError
from vfmlab.atomic import write_json

from .config import STUDY_RATIOS, TrainConfig
from .data import load_sources
from .registry import MODEL_NAMES, get_spec
from .run import pretrain_run, train_run
from ..progress import Reporting, ScaledReporter, SilentReporter

TABLE_COLUMNS = (
    "model", "ratio", "dice", "fp_rate", "fp_pixels", "iou", "precision", "recall",
    "labelled_slices", "slices", "negative_slices", "seconds",
)
TABLE_CSV, TABLE_JSON, PLOT_PNG = "study.csv", "study.json", "study.png"


def run_name(model: str, ratio: float) -> str:
    return f"{model}_{round(ratio * 100):02d}"


def run_study(
    out_dir: str | Path,
    sources: list[dict[str, Any]],
    label: str,
    config: TrainConfig,
    models: tuple[str, ...] = MODEL_NAMES,
    ratios: tuple[float, ...] = STUDY_RATIOS,
    *,
    resume: bool = False,
    reporter: Reporting | None = None,
) -> list[dict[str, Any]]:
    """Train every model at every ratio on the same held-back slices; returns the table rows."""
    out_dir = Path(out_dir)
    reporter = reporter or SilentReporter()
    if not models or not ratios:
        raise InputError("a study needs at least one model and one ratio")
    for model in models:
        get_spec(model)
    config.validate()
    slices = load_sources(sources, str(label), config.data, config.model.image_size)
    plan = []  # (kind, model, ratio, weight in epochs)
    for model in models:
        if get_spec(model).pretraining is not None and config.pretrain.epochs > 0:
            plan.append(("pretrain", model, None, config.pretrain.epochs))
        plan += [("train", model, ratio, config.finetune.epochs) for ratio in ratios]
    total = sum(weight for *_, weight in plan)
    done, rows, pretrained = 0.0, [], {}
    for kind, model, ratio, weight in plan:
        name = f"pretrain {model}" if kind == "pretrain" else run_name(model, ratio)
        sub = ScaledReporter(reporter, done / total, weight / total, name)
        if kind == "pretrain":
            pretrained[model] = pretrain_run(out_dir / "pretrain" / model, sources, label, model, config,
                                             resume=resume, reporter=sub, slices=slices)
            if pretrained[model] is None:
                raise_stopped(name)
        else:
            run_config = dataclasses.replace(config, data=dataclasses.replace(config.data, ratio=ratio))
            metrics = train_run(out_dir / "runs" / run_name(model, ratio), sources, label, model, run_config,
                                resume=resume, pretrained=pretrained.get(model), reporter=sub, slices=slices)
            if metrics.get("stopped"):
                raise_stopped(name)
            rows.append({column: metrics.get(column) for column in TABLE_COLUMNS})
            write_table(out_dir, rows)
        done += weight
    write_plot(out_dir / PLOT_PNG, rows)
    reporter.progress(1.0, f"study done: {len(rows)} runs")
    return rows


def raise_stopped(name: str) -> None:
    raise VfmlabError(f"the study's run '{name}' was stopped (a STOP file in its folder); remove the file and "
                      "run the study again with --resume to continue")


def write_table(out_dir: Path, rows: list[dict[str, Any]]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / TABLE_JSON, {"columns": list(TABLE_COLUMNS), "rows": rows})
    temp = out_dir / f".{TABLE_CSV}.tmp"
    with open(temp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=TABLE_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})
    temp.replace(out_dir / TABLE_CSV)


def write_plot(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Dice vs label ratio per model (Figure 2 of the paper) and false-positive rate on negative slices."""
    from matplotlib.figure import Figure  # no pyplot: leaves the host application's backend alone

    figure = Figure(figsize=(10, 4), dpi=100)
    dice_axes, fp_axes = figure.subplots(1, 2)
    for model in dict.fromkeys(row["model"] for row in rows):
        own = sorted((row for row in rows if row["model"] == model), key=lambda row: row["ratio"])
        percent = [100 * row["ratio"] for row in own]
        dice_axes.plot(percent, [row["dice"] for row in own], marker="o", label=model)
        fp = [row["fp_rate"] for row in own]
        if all(value is not None for value in fp):
            fp_axes.plot(percent, fp, marker="o", label=model)
    dice_axes.set(xlabel="labelled slices (%)", ylabel="Dice", title="Dice by label ratio")
    fp_axes.set(xlabel="labelled slices (%)", ylabel="fraction of negative slices with a false positive",
                title="False positives on negative slices", ylim=(-0.05, 1.05))
    for axes in (dice_axes, fp_axes):
        axes.invert_xaxis()  # as in the paper: from many labels (left) to few (right)
        axes.grid(alpha=0.3)
        axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    return path
