"""Key slices tested, not assumed: one-box propagation seeded at the key slices chosen by the scores, against
seeding at the organ's middle slice, at the same number of uniformly spaced slices, and against the true box
on every slice (the bound), on every labelled 3D volume in ``../shared/data``.

For each volume the key slices are chosen once, from the image alone (no labels: ``vfmlab slices`` at
``--ratio``); for each organ the seeds are the key slices that lie on it, each prompted with the organ's
true box there, and propagated toward its neighbours (:func:`vfmlab.segment.seeds.propagate_from_seeds`).
``uniform`` uses as many seeds, evenly spaced over the organ's slices. An organ no key slice lies on is
listed as missed (it falls back to its middle slice). Prompts saved: 1 - seeds / organ slices. Writes
``OUT.json`` and ``OUT.md``.

    python bench/keyslices_eval.py [--data ../shared/data] [--out bench/results/keyslices_eval] [--ratio 0.3]
        [--reuse-selection bench/results/keyslices_eval.json]   # propagation changed, key slices not
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from segment_robustness import (CT_ORGANS, Case, DiskCachedSegmenter, organ_masks, other_cases, scored,
                                seed_and_bound)
from vfmlab.keyslices.config import KeySliceConfig
from vfmlab.keyslices.run import key_slices
from vfmlab.probes.registry import build_probe
from vfmlab.segment.propagate import box_of
from vfmlab.segment.seeds import propagate_from_seeds
from vfmlab.segment.registry import build_segmenter
from vfmlab.segment.segmenter import Prompt
from vfmlab.volume_io import read_labels, read_volume

STRATEGIES = ("middle", "uniform", "key")


def uniform_seeds(present: np.ndarray, count: int) -> list[int]:
    """``count`` slices at the centres of ``count`` equal parts of the organ's slices."""
    positions = ((np.arange(count) + 0.5) / count * len(present)).astype(int)
    return sorted({int(present[p]) for p in positions})


def organ_eval(engine, truth: np.ndarray, keys: list[int]) -> dict:
    view, present, middle, bound = seed_and_bound(engine, truth)
    on_organ = [k for k in keys if view[k].any()]
    seeds = {"middle": [middle], "key": on_organ or [middle]}
    seeds["uniform"] = uniform_seeds(present, len(seeds["key"]))
    out = {"organ_slices": int(len(present)), "key_seeds": on_organ, "missed": not on_organ,
           "bound": scored(engine, bound, truth)}
    for name in STRATEGIES:
        masks = propagate_from_seeds(engine, "axial", {k: Prompt(box=box_of(view[k])) for k in seeds[name]}).masks
        out[name] = {**scored(engine, masks, truth), "seeds": seeds[name],
                     "prompts_saved": round(1 - len(seeds[name]) / len(present), 3)}
    return out


def sample_ct(data: Path) -> Case:
    ct = read_volume(data / "totalseg" / "example_ct.nii.gz")
    labels = read_labels(data / "totalseg" / "example_seg_fast_force_split.nii.gz", ct)
    return Case("ct/3mm", "ct", ct, organ_masks(labels, CT_ORGANS))


def run(data: Path, ratio: float, cache: Path, reused: dict | None = None) -> dict:
    """``reused``: rows of an earlier run by (case, organ), whose key slices are taken instead of scoring
    again (they depend only on the image and KeySliceConfig, not on propagation)."""
    probe, segmenter = build_probe("litemedsam"), build_segmenter("litemedsam", device="cpu")
    config = KeySliceConfig(ratio=ratio)
    rows = []
    for case in [sample_ct(data), *other_cases(data)]:
        earlier = {organ: reused[(case.name, organ)] for organ in case.labels if (case.name, organ) in (reused or {})}
        if len(earlier) == len(case.labels):
            keys = {organ: row["key_seeds"] for organ, row in earlier.items()}
            first = next(iter(earlier.values()))
            slices, per_slice = first["slices"], first["scoring_seconds_per_slice"]
        else:
            began = time.perf_counter()
            selection = key_slices(case.volume, config, probe).selection
            slices, keys = selection.slices, {organ: selection.indices for organ in case.labels}
            per_slice = round((time.perf_counter() - began) / slices, 3)
        engine = DiskCachedSegmenter(segmenter, case.volume, folder=cache)
        print(f"{case.name}: {slices} slices ({per_slice} s per slice to score)", flush=True)
        for organ, truth in case.labels.items():
            row = {"case": case.name, "organ": organ, "slices": slices, **organ_eval(engine, truth, keys[organ]),
                   "scoring_seconds_per_slice": per_slice}
            rows.append(row)
            print(f"  {organ}: " + ", ".join(f"{n} {row[n]['dice']:.3f}" for n in ("bound", *STRATEGIES)), flush=True)
    return {"ratio": ratio, "model": config.model, "threads": torch.get_num_threads(), "rows": rows,
            "summary": summarise(rows)}


def summarise(rows: list[dict]) -> dict:
    def fraction(row, name):
        return row[name]["dice"] / row["bound"]["dice"] if row["bound"]["dice"] > 0 else 0.0

    key = [fraction(r, "key") for r in rows]
    return {"organs": len(rows), "median_key_over_bound": float(np.median(key)),
            "key_at_least_095_of_bound": int(sum(f >= 0.95 for f in key)),
            "key_beats_uniform": int(sum(r["key"]["dice"] > r["uniform"]["dice"] for r in rows)),
            "key_ties_uniform": int(sum(r["key"]["dice"] == r["uniform"]["dice"] for r in rows)),
            "missed_organs": [f"{r['case']}/{r['organ']}" for r in rows if r["missed"]],
            "median": {name: float(np.median([r[name]["dice"] for r in rows])) for name in ("bound", *STRATEGIES)},
            "median_prompts_saved_key": float(np.median([r["key"]["prompts_saved"] for r in rows])),
            "median_scoring_seconds_per_slice": float(np.median(list({r["case"]: r["scoring_seconds_per_slice"]
                                                                      for r in rows}.values())))}


def markdown(results: dict) -> str:
    s = results["summary"]
    lines = [f"# Key slices as propagation seeds ({results['model']}, ratio {results['ratio']})", "",
             "Generated by `bench/keyslices_eval.py`. Dice of one-box propagation seeded at the organ's middle slice, "
             "at uniformly spaced slices and at the key slices on the organ (as many seeds as key slices there), "
             "each seed prompted with the true box; bound: the true box on every slice.", "",
             f"- organs: {s['organs']}; median Dice: bound {s['median']['bound']:.3f}, middle {s['median']['middle']:.3f}, "
             f"uniform {s['median']['uniform']:.3f}, key {s['median']['key']:.3f}",
             f"- key / bound: median {s['median_key_over_bound']:.3f}; {s['key_at_least_095_of_bound']} of {s['organs']} "
             f"organs at >= 0.95 of the bound (the claim under test)",
             f"- key beats uniform on {s['key_beats_uniform']} organs, ties on {s['key_ties_uniform']}, loses on "
             f"{s['organs'] - s['key_beats_uniform'] - s['key_ties_uniform']}",
             f"- organs no key slice lies on: {', '.join(s['missed_organs']) or 'none'}",
             f"- median prompts saved by the key seeds against prompting every slice: {s['median_prompts_saved_key']:.2f}",
             f"- compute: choosing the key slices costs {s['median_scoring_seconds_per_slice']:.1f} s per slice (median over the "
             "volumes; the probe encoder once on every slice); propagation then encodes every slice it reaches whatever "
             "the seeds, so here the ratio saves prompts (the user's work), not encoder passes",
             "- BT-VAE with key-slice labels against random labels: `bench/keyslices_btvae.py` (keyslices_btvae.md)",
             "", "| case | organ | organ slices | key seeds | bound | middle | uniform | key | key / bound | key - uniform |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        fraction = r["key"]["dice"] / r["bound"]["dice"] if r["bound"]["dice"] else 0.0
        lines.append(f"| {r['case']} | {r['organ']} | {r['organ_slices']} | {len(r['key']['seeds'])}"
                     f"{' (missed)' if r['missed'] else ''} | {r['bound']['dice']:.3f} | {r['middle']['dice']:.3f} | "
                     f"{r['uniform']['dice']:.3f} | {r['key']['dice']:.3f} | {fraction:.3f} | "
                     f"{r['key']['dice'] - r['uniform']['dice']:+.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "keyslices_eval")
    parser.add_argument("--ratio", type=float, default=KeySliceConfig.ratio)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "vfmlab" / "bench-embeddings")
    parser.add_argument("--reuse-selection", type=Path, metavar="EARLIER.json",
                        help="take the key slices from an earlier run's results (same ratio) instead of scoring again")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    reused = None
    if args.reuse_selection:
        earlier = json.loads(args.reuse_selection.read_text())
        if earlier["ratio"] != args.ratio:
            parser.error(f"{args.reuse_selection} chose key slices at ratio {earlier['ratio']}, not {args.ratio}")
        reused = {(row["case"], row["organ"]): row for row in earlier["rows"]}
    results = run(args.data, args.ratio, args.cache, reused)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    args.out.with_suffix(".md").write_text(markdown(results))
    print(json.dumps(results["summary"], indent=1))


if __name__ == "__main__":
    main()
