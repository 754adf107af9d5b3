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


# Options whose default belongs to the command itself, not to a config dataclass (how to run, not what).
COMMAND_OWN_DEFAULTS = {
    ("dvr-train", "nproc"), ("dvr-stop", "wait"), ("dvr-render", "size"), ("dvr-render", "checkpoint"),
    ("render", "labels"), ("btvae-train", "preset"), ("btvae-study", "preset"),
    ("probe", "models"), ("three-balls", "models"),
}


def test_commands_state_no_defaults_of_their_own():
    """Defaults live once, in the config dataclasses: an option left out is None on the command line."""
    import argparse

    from vfmlab.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    stated = set()
    for command, sub in subparsers.choices.items():
        for action in sub._actions:
            plain = action.default in (None, False, [], argparse.SUPPRESS) or action.dest in ("run", "help")
            if not plain and not action.required and action.option_strings:
                stated.add((command, action.dest))
    assert stated <= COMMAND_OWN_DEFAULTS, f"argparse states defaults a config should hold: {stated - COMMAND_OWN_DEFAULTS}"
