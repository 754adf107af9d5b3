"""A small self-contained HTML report (tables, images, notes) that each pipeline step appends to."""
from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from pathlib import Path

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { border-bottom: 2px solid #446; } h2 { margin-top: 1.8em; color: #335; }
table { border-collapse: collapse; margin: 0.8em 0; } td, th { border: 1px solid #ccc; padding: 3px 8px; }
th { background: #eef; text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1em 0; } img { max-width: 100%; border: 1px solid #ddd; }
.ok { color: #161; font-weight: bold; } .bad { color: #a11; font-weight: bold; }
.swatch { display: inline-block; width: 1em; height: 1em; vertical-align: middle; border: 1px solid #555; }
"""


def _cell(value) -> str:
    if isinstance(value, float):
        return f'<td class="num">{value:.4g}</td>'
    if isinstance(value, int):
        return f'<td class="num">{value}</td>'
    if isinstance(value, Html):
        return f"<td>{value.markup}</td>"
    return f"<td>{html.escape(str(value))}</td>"


@dataclass(frozen=True)
class Html:
    """Markup that is inserted as it is (already escaped by the caller)."""

    markup: str


def swatch(rgb: tuple[float, float, float]) -> Html:
    r, g, b = (int(round(255 * c)) for c in rgb)
    return Html(f'<span class="swatch" style="background: rgb({r},{g},{b})"></span>')


@dataclass
class Report:
    title: str
    parts: list[str] = field(default_factory=list)

    def heading(self, text: str) -> None:
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def paragraph(self, text: str, status: bool | None = None) -> None:
        css = "" if status is None else f' class="{"ok" if status else "bad"}"'
        self.parts.append(f"<p{css}>{html.escape(text)}</p>")

    def table(self, header: list[str], rows: list[list]) -> None:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
        self.parts.append(f"<table><tr>{head}</tr>{body}</table>")

    def image(self, path: Path, caption: str, relative_to: Path) -> None:
        src = html.escape(os.path.relpath(path, relative_to))
        self.parts.append(f'<figure><img src="{src}" alt="{html.escape(caption)}"><figcaption>'
                          f"{html.escape(caption)}</figcaption></figure>")

    def write(self, path: Path) -> Path:
        page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
                f"<style>{STYLE}</style></head><body><h1>{html.escape(self.title)}</h1>"
                + "\n".join(self.parts) + "</body></html>")
        path.write_text(page, encoding="utf-8")
        return path
