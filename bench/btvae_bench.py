"""BT-VAE benchmark: seconds per epoch per model and stage at 128² and 256², and the label-ratio study on
the TotalSegmentator example CT (liver = 5, negative slices kept) and on usgra_seg (ultrasound, structure 2,
one negative image) at a CPU-sized configuration; and ``negatives``: false positives on slices without the
structure, per model, at the source's loss weight (α = 0.99) and the CPU preset's (0.5), chosen on CT liver
and reported on CT spleen, CT left kidney and the pyradiomics brain tumour. Prints JSON (and writes it with
--out; sections left out with --only keep their earlier results).

Epoch times are relative to the plain U-Net's fine-tuning epoch measured in the same run (``vs_unet``).

    flock /tmp/vfmlab-heavy.lock python bench/btvae_bench.py [--data ../shared/data] [--out bench/results/btvae.json]
        [--threads 1] [--study-size 64] [--pretrain-epochs 10] [--epochs 40]
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from vfmlab.btvae.config import TrainConfig
from vfmlab.btvae.data import load_sources, split_slices
from vfmlab.btvae.losses import SegmentationLoss
from vfmlab.btvae.pretrain import build_pretrainer
from vfmlab.btvae.registry import MODEL_NAMES, build_model, get_spec
from vfmlab.btvae.run import train_run
from vfmlab.btvae.study import run_study
from vfmlab.btvae.train import RunContext, fit
from vfmlab.runs import RunFolder


def epoch_seconds(sources, size: int, timed_epochs: int) -> dict:
    """Seconds per epoch of each stage of each model on the CT's slices (ratio 0.3, batch 8)."""
    config = TrainConfig.cpu(size, pretrain_epochs=timed_epochs, epochs=timed_epochs)
    slices = load_sources(sources, "5", config.data, size)
    split = split_slices(slices.positive, config.data)
    pool = torch.as_tensor(slices.images[split.training])[:, None]
    images = torch.as_tensor(slices.images[split.labelled])[:, None]
    masks = torch.as_tensor(slices.masks[split.labelled]).float()[:, None]
    loss_fn = SegmentationLoss(config.finetune)
    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        for name in MODEL_NAMES:
            torch.manual_seed(0)
            model = build_model(name, config.model)
            row = {}
            stages = []
            if get_spec(name).pretraining:
                pretrainer = build_pretrainer(get_spec(name).pretraining, model, config.pretrain)
                stages.append(("pretrain", pretrainer, lambda idx, p=pretrainer: p(pool[idx]), len(pool), config.pretrain))

            def step(idx, m=model):
                out = m(images[idx])
                return loss_fn(out.logits, masks[idx], out.mu, out.logvar)

            stages.append(("finetune", model, step, len(images), config.finetune))
            for stage, module, fn, count, settings in stages:
                fn(torch.arange(min(8, count)).numpy()).total.backward()  # warm-up: first-call allocations
                ctx = RunContext(RunFolder(Path(workdir)), {}, 0, timed_epochs, checkpoint_every=10**6)
                began = time.perf_counter()
                fit(stage, module, fn, count, settings, ctx)
                row[f"{stage}_s_per_epoch"] = (time.perf_counter() - began) / timed_epochs
                row[f"{stage}_images"] = count
            results[name] = row
    reference = results["unet"]["finetune_s_per_epoch"]
    for row in results.values():
        row["finetune_vs_unet"] = row["finetune_s_per_epoch"] / reference
        if "pretrain_s_per_epoch" in row:
            row["pretrain_vs_unet_finetune"] = row["pretrain_s_per_epoch"] / reference
    return {"size": size, "widths": list(config.model.widths), "latent": [config.model.latent_channels] + [config.model.latent_size] * 2,
            "labelled_images": int(len(images)), "training_images": int(len(pool)), "models": results}


def study(out_dir: Path, sources, label: str, size: int, pretrain_epochs: int, epochs: int) -> dict:
    config = TrainConfig.cpu(size, pretrain_epochs, epochs)
    config.inference_samples = 8
    began = time.perf_counter()
    rows = run_study(out_dir, sources, label, config)
    return {"size": size, "pretrain_epochs": pretrain_epochs, "epochs": epochs, "seconds": time.perf_counter() - began,
            "table": str(out_dir / "study.csv"), "plot": str(out_dir / "study.png"), "rows": rows}


ALPHAS = {"source_0.99": 0.99, "cpu_default_0.5": 0.5}  # weight of Dice in α·Dice + (1 − α)·BCE


def negatives_cases(data: Path) -> dict[str, dict]:
    """CT liver is where the loss weight was chosen (tuning); the other structures report it."""
    ct = {"volume": str(data / "totalseg" / "example_ct.nii.gz"),
          "labels": str(data / "totalseg" / "example_seg_fast_force_split.nii.gz")}
    brain = {"volume": str(data / "pyradiomics" / "brain2_image.nrrd"),
             "labels": str(data / "pyradiomics" / "brain2_label.nrrd")}
    return {"ct_liver": {"sources": [ct], "label": "5", "half": "tuning"},
            "ct_spleen": {"sources": [ct], "label": "1", "half": "reporting"},
            "ct_kidney_left": {"sources": [ct], "label": "3", "half": "reporting"},
            "mr_brain_tumour": {"sources": [brain], "label": "1", "half": "reporting"}}


def negatives(out_dir: Path, data: Path, size: int, pretrain_epochs: int, epochs: int, ratio: float) -> dict:
    """False positives on slices without the structure, per model, at the source's loss weight and at the
    CPU preset's: Dice on positive slices, share of negative slices with any predicted pixel, pixels there."""
    rows = []
    for case, spec in negatives_cases(data).items():
        for alpha_name, alpha in ALPHAS.items():
            config = TrainConfig.cpu(size, pretrain_epochs, epochs)
            config.inference_samples, config.data.ratio, config.finetune.alpha = 8, ratio, alpha
            slices = load_sources(spec["sources"], spec["label"], config.data, size)
            for model in MODEL_NAMES:
                metrics = train_run(out_dir / case / alpha_name / model, spec["sources"], spec["label"], model,
                                    config, slices=slices)
                rows.append({"case": case, "half": spec["half"], "alpha": alpha, "model": model,
                             **{key: metrics[key] for key in ("dice", "fp_rate", "fp_pixels", "slices",
                                                             "negative_slices", "seconds")}})
                print(json.dumps(rows[-1]), flush=True)
    return {"size": size, "pretrain_epochs": pretrain_epochs, "epochs": epochs, "ratio": ratio, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--timed-epochs", type=int, default=2)
    parser.add_argument("--study-size", type=int, default=64)
    parser.add_argument("--pretrain-epochs", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--study-dir", type=Path, default=Path(tempfile.gettempdir()) / "btvae_bench")
    parser.add_argument("--only", nargs="*", default=["epoch_seconds", "studies", "negatives"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ct = [{"volume": str(args.data / "totalseg" / "example_ct.nii.gz"),
           "labels": str(args.data / "totalseg" / "example_seg_fast_force_split.nii.gz")}]
    # Sections not run this time keep their last results (each section is measured within one run).
    result = json.loads(args.out.read_text(encoding="utf-8")) if args.out and args.out.is_file() else {}
    result |= {"device": "cpu", "torch_threads": args.threads}
    if "epoch_seconds" in args.only:
        result["epoch_seconds"] = [epoch_seconds(ct, size, args.timed_epochs) for size in (128, 256)]
    if "negatives" in args.only:
        result["negatives"] = negatives(args.study_dir / "negatives", args.data, args.study_size, args.pretrain_epochs,
                                        args.epochs, ratio=0.3)
    if "studies" in args.only:
        result["study_ct_liver"] = study(args.study_dir / "ct_liver", ct, "5", args.study_size, args.pretrain_epochs,
                                         args.epochs)
        result["study_usgra_structure2"] = study(args.study_dir / "usgra", [{"folder": str(args.data / "usgra_seg")}],
                                                 "2", args.study_size, args.pretrain_epochs, args.epochs)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        for key in ("study_ct_liver", "study_usgra_structure2"):  # the tables and plots beside the JSON
            for kind in ("table", "plot"):
                if "studies" in args.only:
                    source = Path(result[key][kind])
                    shutil.copyfile(source, args.out.parent / f"btvae_{key}{source.suffix}")
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
