"""bench/results/SOURCES_vs_HERE.md is what bench/sources_vs_here.py makes of the result files beside it."""
from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_the_page_is_generated_from_the_committed_results():
    spec = importlib.util.spec_from_file_location("sources_vs_here", BENCH / "sources_vs_here.py")
    page = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(page)
    assert page.PAGE.is_file(), "run python bench/sources_vs_here.py"
    assert page.PAGE.read_text(encoding="utf-8") == page.render_page(), \
        "a result file changed after the page was written: run python bench/sources_vs_here.py"
