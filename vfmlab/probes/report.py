"""``index.html`` of a probe run (and the sections the demo and three-balls reports reuse)."""
from __future__ import annotations

from pathlib import Path

from ..report import Report
from .registry import get_spec


def add_probe_sections(report: Report, summary: dict, out_dir: Path, relative_to: Path) -> None:
    """Model comparison table, then per model its grid and head table; skipped models with the reason."""
    models = summary.get("models", {})
    if models:
        report.heading("Models")
        rows = []
        for model, result in models.items():
            numbers = result.get("summary") or {}
            attention = result["attention"]
            rows.append([model, attention["mode"], attention["heads"], "x".join(map(str, attention["grid"])),
                         result["seconds_per_capture"], numbers.get("specialised_heads", "-"),
                         numbers.get("distinct_segments", "-"), numbers.get("mean_best_auroc") or "-",
                         numbers.get("mean_entropy") or "-"])
        report.table(["model", "read-out", "heads", "grid", "s / capture", "specialised heads",
                      "distinct segments", "mean best AUROC", "mean entropy"], rows)
        report.paragraph("A head specialises when its attention ranks one segment's cells above the rest with "
                         "AUROC >= 0.8 (averaged over the views). Entropy 1 = attention spread evenly.")
    for model, reason in summary.get("skipped", {}).items():
        report.paragraph(f"{model} ({get_spec(model).description}) skipped: {reason}", status=False)
    for model, result in models.items():
        report.heading(f"{model}: {get_spec(model).description}")
        report.image(out_dir / result["grid"], f"{model}: each row a capture; columns: capture, the last layer's "
                     f"heads ({result['attention']['mode']} attention), their mean", relative_to)
        heads = result["heads"]
        if any(row["best_auroc"] is not None for row in heads):
            report.table(["head", "best segment", "AUROC", "entropy"],
                         [[row["head"], row["best_segment"] or "-", row["best_auroc"] or "-", row["entropy"]]
                          for row in heads])


def write_probe_report(out_dir: Path, summary: dict, title: str = "Attention probes") -> Path:
    report = Report(title)
    report.paragraph(f"Captures: {len(summary.get('captures', []))} from {summary.get('source')}")
    add_probe_sections(report, summary, out_dir, out_dir)
    return report.write(out_dir / "index.html")
