"""Segmentation benchmark: encoder time per slice, prompt latency with a cached embedding, propagation time
per slice, and Dice per organ on the TotalSegmentator example CT — LiteMedSAM propagated from one box vs the
true box on every slice; the HQ ablation (``hq_ablation``, alone with ``--ablation-only``): fine-tuned on
the same slices per seed, (a) HQ-LiteMedSAM's HQ parts, (b) its whole mask decoder, (c) LiteMedSAM's mask
decoder without the HQ token, held-out Dice mean and spread over seeds; and LiteMedSAM's image encoder in torch fp32 against
ONNX Runtime on the same slices (``encoder_backends``; alone, in about a minute, with ``--encoder-only``).
Prints JSON.

    python bench/segment_bench.py [--data ../shared/data] [--out bench/results/segment.json] [--epochs 16]
    python bench/segment_bench.py --encoder-only
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from vfmlab.volume_io import read_labels, read_volume
from vfmlab.metrics import overlap_metrics, segment_metrics
from vfmlab.segment.config import SegmenterFinetuneConfig
from vfmlab.segment.finetune import finetune, finetune_run
from vfmlab.segment.propagate import box_of, propagate
from vfmlab.segment.encoder_backends import record_path
from vfmlab.segment.registry import build_segmenter
from vfmlab.segment.segmenter import Prompt, PromptSegmenter
from vfmlab.segment.volume_segmenter import VolumeSegmenter
from vfmlab.weights import ENV_VAR

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


def timed(function, repeats: int):
    """Median seconds of ``repeats`` calls of ``function()``, and its last result."""
    timings = []
    for _ in range(repeats):
        began = time.perf_counter()
        result = function()
        timings.append(time.perf_counter() - began)
    return float(np.median(timings)), result


def onnx_export_timings() -> tuple[PromptSegmenter, dict]:
    """A LiteMedSAM with its encoder in ONNX Runtime, exported into a fresh temporary cache, and the
    seconds of the one-time export and of a later load from the cache."""
    with tempfile.TemporaryDirectory() as cache, mock.patch.dict(os.environ, {ENV_VAR: cache}):
        began = time.perf_counter()
        onnx = build_segmenter("litemedsam", device="cpu", backend="onnx")
        onnx.encode_image.load()  # the cache is empty: this exports
        first_load = time.perf_counter() - began
        record = json.loads(record_path(onnx.encode_image.path).read_text())
        began = time.perf_counter()
        build_segmenter("litemedsam", device="cpu", backend="onnx").encode_image.load()
        cached_load = time.perf_counter() - began
    return onnx, {"export_seconds": record["export_seconds"], "build_and_export_seconds": first_load,
                  "build_and_load_from_cache_seconds": cached_load}


def encoder_backends(ct, labels, repeats: int = 3) -> dict:
    """LiteMedSAM's encoder in torch fp32 and in ONNX Runtime on the middle slice of each organ: seconds per
    slice (median over slices of the median of ``repeats``, after a warm-up, the backends taking turns on
    each slice), the one-time export, and per slice the largest embedding difference and the Dice between
    the two backends' masks for the organ's box."""
    onnx, export = onnx_export_timings()
    reference = build_segmenter("litemedsam", device="cpu", backend="torch")
    engine = VolumeSegmenter(reference, ct)
    masks = {organ: engine.stack("axial").view(labels) == value for organ, value in ORGANS.items()}
    slices = {organ: middle_slice(mask) for organ, mask in masks.items()}
    first = engine.slice_image("axial", slices["liver"])
    reference.encode(first), onnx.encode(first)  # warm-up: first-call allocations, ORT's memory arena
    seconds, per_slice = {"torch": [], "onnx": []}, {}
    for organ, index in slices.items():
        image = engine.slice_image("axial", index)
        torch_s, slow = timed(lambda: reference.encode(image), repeats)
        onnx_s, fast = timed(lambda: onnx.encode(image), repeats)
        seconds["torch"].append(torch_s)
        seconds["onnx"].append(onnx_s)
        prompt = Prompt(box=box_of(masks[organ][index]))
        per_slice[organ] = {
            "slice": index, "torch_seconds": torch_s, "onnx_seconds": onnx_s,
            "mask_dice": overlap_metrics(onnx.predict(fast, prompt).mask, reference.predict(slow, prompt).mask)["dice"],
            "max_abs_embedding_difference": float((fast.features - slow.features).abs().max()),
        }
    torch_s, onnx_s = float(np.median(seconds["torch"])), float(np.median(seconds["onnx"]))
    return {
        "model": "litemedsam", "threads": torch.get_num_threads(), "repeats": repeats,
        "torch_fp32_seconds_per_slice": torch_s, "onnx_seconds_per_slice": onnx_s,
        "onnx_over_torch": onnx_s / torch_s, "goal_onnx_over_torch": 0.55, **export,
        "min_mask_dice_onnx_vs_torch": min(s["mask_dice"] for s in per_slice.values()), "per_slice": per_slice,
    }


def middle_slice(mask: np.ndarray) -> int:
    present = np.flatnonzero(mask.any(axis=(1, 2)))
    return int(present[len(present) // 2])


# HQ ablation: which parts of the decoder to fine-tune, and does the HQ token help at all on CT?
HQ_VARIANTS = {
    "hq_parts": dict(model="hq_litemedsam", learning_rate=3e-3),  # HQ-SAM's protocol: HQ token, its MLP, fusion
    "whole_decoder": dict(model="hq_litemedsam", learning_rate=3e-4, train_decoder=True),
    "whole_decoder_without_hq": dict(model="litemedsam", learning_rate=3e-4, train_decoder=True),
}
ABLATION_SEGMENTS = {"kidney_right": 2, "pancreas": 7, "aorta": 52}


def finetune_run_record(ct, labels, config: SegmenterFinetuneConfig, run_dir: Path) -> dict:
    """One fine-tuning run: held-out mean Dice un-tuned, at the best epoch and at the last, and seconds."""
    began = time.perf_counter()
    summary = finetune(ct, labels, config, run_dir)
    history = finetune_run(run_dir).metrics()
    return {"untuned": float(np.mean(list(summary["baseline_dice"].values()))),
            # the best epoch is chosen on these held-out slices; the last epoch's Dice is not
            "best": summary["best_mean_val_dice"], "last_epoch": history[-1]["mean_val_dice"],
            "per_epoch": [round(h["mean_val_dice"], 4) for h in history], "seconds": time.perf_counter() - began,
            "train_slices": summary["train_slices"], "held_out_slices": summary["held_out_slices"]}


def hq_ablation(ct, labels, epochs: int, seeds: tuple[int, ...], runs_dir: Path) -> dict:
    """Each variant fine-tuned on the same slices per seed (the seed draws the split and the training noise);
    held-out mean Dice per variant as mean and spread over the seeds."""
    variants: dict = {}
    for name, setting in HQ_VARIANTS.items():
        runs = {}
        for seed in seeds:
            config = SegmenterFinetuneConfig(segments=ABLATION_SEGMENTS, epochs=epochs, batch_size=4, seed=seed,
                                             cosine_schedule=True, max_slices_per_segment=14, device="cpu", **setting)
            run_dir = runs_dir / f"{name}_seed{seed}"
            cached = runs_dir / f"features_{config.model}_seed{seed}.pt"  # same slices and encoder: encode once
            if cached.is_file():
                run_dir.mkdir(parents=True, exist_ok=True)
                shutil.copy(cached, run_dir / "embeddings.pt")
            runs[seed] = finetune_run_record(ct, labels, config, run_dir)
            shutil.copy(run_dir / "embeddings.pt", cached)
            print(json.dumps({name: {seed: runs[seed]}}), flush=True)
        variants[name] = {"config": {key: setting.get(key, getattr(SegmenterFinetuneConfig, key)) for key in
                                     ("model", "learning_rate", "train_decoder")},
                          **{f"{key}_mean": float(np.mean([r[key] for r in runs.values()])) for key in
                             ("untuned", "best", "last_epoch")},
                          **{f"{key}_std": float(np.std([r[key] for r in runs.values()])) for key in
                             ("best", "last_epoch")},
                          "runs": runs}
    return {"segments": ABLATION_SEGMENTS, "epochs": epochs, "batch_size": 4, "cosine_schedule": True,
            "max_slices_per_segment": 14, "seeds": list(seeds), "variants": variants}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--encoder-only", action="store_true", help="only the torch vs ONNX Runtime encoder part")
    parser.add_argument("--ablation-only", action="store_true", help="only the HQ fine-tuning ablation")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the HQ ablation")
    args = parser.parse_args()
    torch.set_num_threads(2)
    ct = read_volume(args.data / "totalseg" / "example_ct.nii.gz")
    labels = read_labels(args.data / "totalseg" / "example_seg_fast_force_split.nii.gz", ct)
    # Sections not run this time keep their last results (each section is measured within one run).
    results: dict = json.loads(args.out.read_text()) if args.out and args.out.is_file() else {}
    results["machine"] = {"threads": torch.get_num_threads(), "device": "cpu"}
    runs_dir = (args.out.parent if args.out else Path("bench/results")) / "segment_finetune_runs"
    results.pop("hq_litemedsam_finetune", None)  # the two-variant comparison the ablation replaced
    if args.ablation_only:
        results["hq_ablation"] = hq_ablation(ct, labels, args.epochs, tuple(args.seeds), runs_dir)
        write(results, args.out)
        return
    results["encoder_backends"] = encoder_backends(ct, labels)
    print(json.dumps(results["encoder_backends"], indent=1), flush=True)
    if args.encoder_only:
        write(results, args.out)
        return

    segmenter = build_segmenter("litemedsam", device="cpu")
    results["litemedsam_encoder_backend"] = segmenter.backend
    engine = VolumeSegmenter(segmenter, ct)
    image = engine.slice_image("axial", 90)
    segmenter.encode(image)  # warm-up
    encode_seconds, embedding = timed(lambda: segmenter.encode(image), 3)
    prompt_seconds, _ = timed(lambda: segmenter.predict(embedding, Prompt(box=(40, 30, 80, 70))), 10)
    results["litemedsam_encoder_seconds_per_slice"] = encode_seconds
    results["litemedsam_prompt_to_mask_ms_cached"] = 1000 * prompt_seconds
    results["speedup_cached_vs_encode"] = encode_seconds / prompt_seconds

    labels_view = engine.stack("axial").view(labels)
    results["litemedsam_organs"] = {name: organ_run(engine, labels_view == value) for name, value in ORGANS.items()}
    print(json.dumps(results["litemedsam_organs"], indent=1), flush=True)

    results["hq_ablation"] = hq_ablation(ct, labels, args.epochs, tuple(args.seeds), runs_dir)
    print(json.dumps(results, indent=1))
    write(results, args.out)


def write(results: dict, out: Path | None) -> None:
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
