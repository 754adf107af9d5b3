"""Segmentation benchmark: encoder time per slice, prompt latency with a cached embedding, propagation time
per slice, and Dice per organ on the TotalSegmentator example CT — LiteMedSAM propagated from one box vs the
true box on every slice, and HQ-LiteMedSAM fine-tuned on other slices vs un-tuned
(HQ parts only, and with the whole mask decoder). Prints JSON.

    python bench/segment_bench.py [--data ../shared/data] [--out bench/results/segment.json] [--epochs 16]
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from vfmlab.io import read_labels, read_volume
from vfmlab.metrics import segment_metrics
from vfmlab.segment.finetune import FinetuneConfig, finetune
from vfmlab.segment.propagate import box_of, propagate
from vfmlab.segment.registry import build_segmenter
from vfmlab.segment.segmenter import Prompt
from vfmlab.segment.volume_segmenter import VolumeSegmenter

ORGANS = {"liver": 5, "spleen": 1, "kidney_right": 2, "kidney_left": 3, "aorta": 52, "pancreas": 7}


def organ_run(engine: VolumeSegmenter, reference: np.ndarray) -> dict:
    present = np.flatnonzero(reference.any(axis=(1, 2)))
    seed = int(present[len(present) // 2])
    began = time.perf_counter()
    encoded_before = engine.cache.misses
    result = propagate(engine, "axial", seed, Prompt(box=box_of(reference[seed])))
    seconds = time.perf_counter() - began
    walked = len(result.records) + 1
    truth = engine.to_volume_mask("axial", {k: reference[k] for k in present})
    propagated = engine.to_volume_mask("axial", result.masks)
    every = engine.to_volume_mask("axial", {
        k: engine.segment_slice("axial", k, Prompt(box=box_of(reference[k]))).mask for k in present})
    return {
        "reference_slices": [int(present.min()), int(present.max())], "seed": seed,
        "propagated_slices": list(map(int, result.slice_range)), "stopped": result.stop_reasons,
        "dice_propagated": segment_metrics(propagated, truth)["dice"],
        "dice_true_box_every_slice": segment_metrics(every, truth)["dice"],
        "propagation_seconds_per_slice": seconds / walked,
        "slices_encoded_during_propagation": engine.cache.misses - encoded_before,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--epochs", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(2)
    ct = read_volume(args.data / "totalseg" / "example_ct.nii.gz")
    labels = read_labels(args.data / "totalseg" / "example_seg_fast_force_split.nii.gz", ct)
    results: dict = {"machine": {"threads": torch.get_num_threads(), "device": "cpu"}}

    segmenter = build_segmenter("litemedsam", device="cpu")
    engine = VolumeSegmenter(segmenter, ct)
    image = engine.slice_image("axial", 90)
    segmenter.encode(image)  # warm-up
    timings = []
    for _ in range(3):
        began = time.perf_counter()
        embedding = segmenter.encode(image)
        timings.append(time.perf_counter() - began)
    latency = []
    for _ in range(10):
        began = time.perf_counter()
        segmenter.predict(embedding, Prompt(box=(40, 30, 80, 70)))
        latency.append(time.perf_counter() - began)
    results["litemedsam_encoder_seconds_per_slice"] = float(np.median(timings))
    results["litemedsam_prompt_to_mask_ms_cached"] = 1000 * float(np.median(latency))
    results["speedup_cached_vs_encode"] = float(np.median(timings) / np.median(latency))

    labels_view = engine.stack("axial").view(labels)
    results["litemedsam_organs"] = {name: organ_run(engine, labels_view == value) for name, value in ORGANS.items()}
    print(json.dumps(results["litemedsam_organs"], indent=1), flush=True)

    # HQ-SAM's protocol (HQ parts only) and the whole mask decoder; mini-batches of 4, cosine decay
    settings = {"hq_parts": dict(learning_rate=3e-3),
                "hq_parts_and_decoder": dict(learning_rate=3e-4, train_decoder=True)}
    runs_dir = (args.out.parent if args.out else Path("bench/results")) / "segment_finetune_runs"
    results["hq_litemedsam_finetune"] = {}
    for name, setting in settings.items():
        config = FinetuneConfig(segments={"kidney_right": 2, "pancreas": 7, "aorta": 52}, epochs=args.epochs,
                                batch_size=4, cosine_schedule=True, max_slices_per_segment=14, device="cpu", **setting)
        run_dir = runs_dir / name
        run_dir.mkdir(parents=True, exist_ok=True)
        features = runs_dir / "hq_parts" / "embeddings.pt"
        if name != "hq_parts" and features.is_file():  # same slices: encode them once
            shutil.copy(features, run_dir / "embeddings.pt")
        began = time.perf_counter()
        summary = finetune(ct, labels, config, run_dir)
        history = json.loads((run_dir / "history.json").read_text())
        results["hq_litemedsam_finetune"][name] = {
            "config": {key: getattr(config, key) for key in ("learning_rate", "batch_size", "cosine_schedule",
                                                             "train_decoder", "epochs")},
            "segments": config.segments, "held_out_dice_untuned": summary["baseline_dice"],
            "held_out_mean_dice_untuned": float(np.mean(list(summary["baseline_dice"].values()))),
            # the best epoch is chosen on these held-out slices; the last epoch's Dice is not
            "held_out_mean_dice_best": summary["best_mean_val_dice"],
            "held_out_mean_dice_last_epoch": history[-1]["mean_val_dice"],
            "held_out_mean_dice_per_epoch": [round(h["mean_val_dice"], 4) for h in history],
            "seconds": time.perf_counter() - began,
            "train_slices": summary["train_slices"], "held_out_slices": summary["held_out_slices"],
        }
    text = json.dumps(results, indent=1)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
