"""The code keeps its shape: no function in the core library or the benchmarks over 60 lines."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 60


def _functions(folder: str):
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield path.relative_to(ROOT), node.name, node.end_lineno - node.lineno + 1


def test_no_function_in_vfmlab_or_bench_is_longer_than_60_lines():
    functions = [f for folder in ("vfmlab", "bench") for f in _functions(folder)]
    assert len(functions) > 500, f"only {len(functions)} functions found: is the walk looking in the right place?"
    too_long = [f"{path}:{name} ({lines} lines)" for path, name, lines in functions if lines > MAX_LINES]
    assert not too_long, "split these into named steps: " + "; ".join(too_long)
