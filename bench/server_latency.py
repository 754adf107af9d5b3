"""Latency of prompt -> mask through the model server against in process, JSON out (same run, same machine).

Both sides use LiteMedSAM's real weights on the sample CT (totalseg example CT) with the slice's
embedding already cached, so the difference is what the server adds: HTTP on loopback, JSON, the
bit-packed mask and the client's decoding (goal: <= 15 ms). Prompts are boxes around the right kidney
on its slices, each timed ``--repeats`` times; the medians are reported, with the first (uncached)
request through the server for reference.

Run: ``python bench/server_latency.py --out bench/results/server_latency.json``
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VFMLAB_SHARED_DATA", REPO.parent / "shared" / "data"))
MODEL, KIDNEY_RIGHT = "litemedsam", 2


def kidney_prompts(engine, labels, count: int) -> list[tuple[int, tuple]]:
    from vfmlab.segment.propagate import box_of

    reference = engine.stack("axial").view(labels == KIDNEY_RIGHT)
    slices = np.flatnonzero(reference.sum(axis=(1, 2)) > 20)
    chosen = slices[np.linspace(0, len(slices) - 1, min(count, len(slices))).round().astype(int)]
    return [(int(index), box_of(reference[index])) for index in chosen]


def timed(call, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000.0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import torch

    from vfmlab.client import LocalServer
    from vfmlab.segment.registry import build_segmenter
    from vfmlab.segment.segmenter import Prompt
    from vfmlab.segment.volume_segmenter import VolumeSegmenter
    from vfmlab.volume_io import read_labels, read_volume

    torch.set_num_threads(1)
    ct = read_volume(SHARED / "totalseg" / "example_ct.nii.gz")
    labels = read_labels(SHARED / "totalseg" / "example_seg_fast_force_split.nii.gz", ct)
    engine = VolumeSegmenter(build_segmenter(MODEL, device="cpu"), ct)
    prompts = kidney_prompts(engine, labels, args.prompts)
    with LocalServer(options=("--device", "cpu"), env={"OMP_NUM_THREADS": "1"}) as server:
        client = server.wait_ready(180)
        sha = client.send_volume(ct.array, ct.ijk_to_ras)
        local_ms, server_ms, first_ms = [], [], []
        for index, box in prompts:
            engine.embedding("axial", index)  # cached on both sides before timing
            first_ms += timed(lambda: client.segment(MODEL, sha, "axial", index, box=box), 1)
            local_ms += timed(lambda: engine.segment_slice("axial", index, Prompt(box)), args.repeats)
            server_ms += timed(lambda: client.segment(MODEL, sha, "axial", index, box=box), args.repeats)
    local, through = statistics.median(local_ms), statistics.median(server_ms)
    report = {
        "benchmark": "prompt -> mask through the model server vs in process (embedding cached)",
        "data": "totalseg example CT, right-kidney boxes on axial slices", "model": MODEL,
        "slice_shape": list(engine.stack("axial").shape[1:]), "prompts": len(prompts), "repeats": args.repeats,
        "median_in_process_ms": round(local, 2), "median_through_server_ms": round(through, 2),
        "median_added_ms": round(through - local, 2), "p90_added_ms": round(
            float(np.percentile(server_ms, 90)) - float(np.percentile(local_ms, 90)), 2),
        "median_first_request_ms (encodes the slice)": round(statistics.median(first_ms), 1),
        "goal_added_ms": 15.0, "meets_goal": through - local <= 15.0,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, one torch thread each side",
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
