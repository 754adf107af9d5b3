"""How far propagation's stop rules are from the best possible stop, on the cases of ``segment_robustness.py``.

Each organ is walked once from the true box on its middle reference slice with the default boxes
(``PropagationConfig()``) and every stop rule switched off, to the volume's end or until the mask vanishes.
A rule set only decides where each direction ends, so replaying the recorded slices through
:func:`vfmlab.segment.propagate.check_slice` gives what ``propagate`` returns with those rules (the default
rules replayed reproduce ``segment_robustness.json``), in seconds instead of half an hour. The oracle ends
each direction on the slice that maximises the organ's 3D Dice: the ceiling of any stop rule on these walks.
Halves as in ``segment_robustness.split_half``; choose rules on the tuning half.

    python bench/segment_stop_rules.py [--record] [--out bench/results/segment_stop_rules]

The walks are kept in ``--walks`` (JSON); ``--record`` walks again (about 20 minutes on 2 cores with the
embeddings cached by segment_robustness.py).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from segment_robustness import (DiskCachedSegmenter, other_cases, sample_ct_cases, scored, seed_and_bound,
                                split_half, summarise, summary_tables)
from vfmlab.segment.propagate import (AreaTrend, IntensityReference, PropagationConfig, SliceRecord, box_of,
                                      check_slice, propagate)
from vfmlab.segment.registry import build_segmenter
from vfmlab.segment.segmenter import Prompt
from vfmlab.segment.volume_segmenter import VolumeSegmenter

DEFAULT = PropagationConfig()
NO_STOP = replace(DEFAULT, min_predicted_iou=0.0, area_ratio=(0.0, float("inf")), min_overlap=0.0,
                  intensity_tolerance=None, min_intensity_inliers=None, max_regrowth=None)
# Rule sets replayed: the default and one rule changed at a time (the boxes stay the default's).
RULE_SETS = {
    "default": DEFAULT,
    "iou_only": replace(NO_STOP, min_predicted_iou=DEFAULT.min_predicted_iou),
    "no_inliers": replace(DEFAULT, min_intensity_inliers=None),
    "inliers_0.3": replace(DEFAULT, min_intensity_inliers=0.3),
    "inliers_0.5": replace(DEFAULT, min_intensity_inliers=0.5),
    "iou_0.5": replace(DEFAULT, min_predicted_iou=0.5),
    "area_growth_1.8": replace(DEFAULT, area_ratio=(0.4, 1.8)),  # the default before this bench
    "area_growth_4": replace(DEFAULT, area_ratio=(0.4, 4.0)),
    "overlap_0.5": replace(DEFAULT, min_overlap=0.5),
    "mean_intensity_0.16": replace(DEFAULT, intensity_tolerance=0.16),
    "regrowth_2": replace(DEFAULT, max_regrowth=2.0),
}


def record_walk(engine: VolumeSegmenter, truth: np.ndarray) -> dict:
    """The no-stop walk of one organ: per slice its record, kept area and pixels inside the reference."""
    view, present, seed, bound = seed_and_bound(engine, truth)
    result = propagate(engine, "axial", seed, Prompt(box=box_of(view[seed])), NO_STOP)
    plain = propagate(engine, "axial", seed, Prompt(box=box_of(view[seed])), PropagationConfig.plain())
    seed_mask = result.masks[seed]
    reference = IntensityReference.of(engine.slice_image("axial", seed), seed_mask)
    return {"seed": seed, "reference_slices": [int(present.min()), int(present.max())],
            "truth_voxels": int(view.sum()), "reference": asdict(reference),
            "bound": scored(engine, bound, truth), "plain": scored(engine, plain.masks, truth),
            "records": [asdict(r) for r in result.records],
            "kept": {str(k): [int(m.sum()), int((m & view[k]).sum())] for k, m in result.masks.items()}}


def replay(walk: dict, config: PropagationConfig | None) -> dict:
    """Dice, precision and slice range when each direction ends where ``config``'s rules (None: the oracle) say."""
    kept = {int(k): v for k, v in walk["kept"].items()}
    seed = walk["seed"]
    reference = IntensityReference(**walk["reference"])
    walked = {sign: [SliceRecord(**r) for r in walk["records"] if (r["index"] - seed) * sign > 0 and r["index"] in kept]
              for sign in (1, -1)}
    if config is None:
        chosen = _oracle(walk, kept, [r.index for r in walked[1]], [r.index for r in walked[-1]])
    else:
        chosen = [seed]
        for records in walked.values():
            previous_area = kept[seed][0]
            trend = AreaTrend(previous_area, previous_area)
            for record in records:
                if check_slice(config, record, previous_area, reference, trend):
                    break
                chosen.append(record.index)
                previous_area = kept[record.index][0]
                trend.update(previous_area)
    predicted = sum(kept[k][0] for k in chosen)
    hits = sum(kept[k][1] for k in chosen)
    return {"dice": 2 * hits / (predicted + walk["truth_voxels"]), "precision": hits / max(predicted, 1),
            "slices": [min(chosen), max(chosen)]}


def _oracle(walk: dict, kept: dict, up: list[int], down: list[int]) -> list[int]:
    """The seed and the first ``u`` slices walked up and ``d`` down, ``(u, d)`` maximising the 3D Dice."""
    def totals(indices: list[int]) -> np.ndarray:  # (n + 1, 2): predicted voxels and hits of the first n
        return np.cumsum([[0, 0], *(kept[k] for k in indices)], axis=0)

    up_totals, down_totals = totals(up), totals(down)
    predicted = kept[walk["seed"]][0] + up_totals[:, None, 0] + down_totals[None, :, 0]
    hits = kept[walk["seed"]][1] + up_totals[:, None, 1] + down_totals[None, :, 1]
    u, d = np.unravel_index(np.argmax(2 * hits / (predicted + walk["truth_voxels"])), predicted.shape)
    return [walk["seed"], *up[:u], *down[:d]]


def replayed_rows(walks: list[dict], rule_sets: dict[str, PropagationConfig | None]) -> list[dict]:
    """Rows as ``segment_robustness.summarise`` takes them: each walk's bound, plain baseline and replays."""
    return [{key: walk[key] for key in ("case", "organ", "half", "bound", "plain")}
            | {name: replay(walk, config) for name, config in rule_sets.items()} for walk in walks]


def record_all(data: Path, cache: Path) -> list[dict]:
    torch.set_num_threads(2)
    segmenter = build_segmenter("litemedsam", device="cpu", backend="auto")
    walks = []
    for case in [*sample_ct_cases(data, cache.parent / "bench-variants"), *other_cases(data)]:
        engine = DiskCachedSegmenter(segmenter, case.volume, folder=cache)
        for organ, truth in case.labels.items():
            walk = {"case": case.name, "organ": organ, "half": split_half(f"{case.source}:{organ}"),
                    **record_walk(engine, truth)}
            walks.append(walk)
            print(json.dumps({k: walk[k] for k in ("case", "organ", "half")}), flush=True)
    return walks


def markdown(summary: dict, names: list[str]) -> str:
    return "\n".join(["# Stop rules against the best possible stop (LiteMedSAM, default boxes)", "",
                      "Generated by `bench/segment_stop_rules.py`: walks recorded with no stop rule, replayed through",
                      "`check_slice`; *oracle* ends each direction where the organ's 3D Dice is highest.", "",
                      *summary_tables(summary, names)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "vfmlab" / "bench-embeddings")
    parser.add_argument("--walks", type=Path, default=Path.home() / ".cache" / "vfmlab" / "bench-walks.json")
    parser.add_argument("--record", action="store_true", help="walk again even when --walks exists")
    parser.add_argument("--out", type=Path, default=Path("bench/results/segment_stop_rules"))
    args = parser.parse_args()
    if args.record or not args.walks.is_file():
        args.cache.mkdir(parents=True, exist_ok=True)
        args.walks.write_text(json.dumps(record_all(args.data, args.cache)))
    walks = json.loads(args.walks.read_text())
    names = [*RULE_SETS, "oracle"]
    summary = summarise(replayed_rows(walks, {**RULE_SETS, "oracle": None}), names)
    result = {"rule_sets": {name: asdict(config) for name, config in RULE_SETS.items()}, "summary": summary}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str))
    args.out.with_suffix(".md").write_text(markdown(summary, names))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
