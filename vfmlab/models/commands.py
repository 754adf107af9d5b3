"""``vfmlab models``: every model of the catalogue (and the user's fine-tuned ones) with its weights status."""
from __future__ import annotations

import argparse
import json

from ..cli import Command
from .catalogue import FAMILIES


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--family", choices=FAMILIES, help="only the models with this role")
    parser.add_argument("--json", action="store_true", help="a JSON list instead of a table")


def _run(args: argparse.Namespace) -> int:
    from .listing import model_rows

    rows = model_rows(args.family)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    width = max(len(row["name"]) for row in rows)
    for row in rows:
        print(f"{row['name']:<{width}}  {','.join(row['families']):<17}  {row['status']:<12}  {row['description']}")
    return 0


COMMANDS = [Command("models", "list every model (segmenters, probes, DeepDVR, BT-VAE) with its weights status",
                    _configure, _run)]
