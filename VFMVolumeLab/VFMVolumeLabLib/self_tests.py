"""End-to-end checks of VFM Volume Lab's sections through the model server, on the bundled sample CT.

Run by the module's test class in Slicer's ``--test`` mode (a local server started with PythonSlicer)
and by pytest on real MRML (``Testing/Python/test_self_tests.py``). Jobs are followed with hand-fired
timers: a self-test waits on the main thread, where Qt timers would not fire. Each check raises
``AssertionError`` saying what went wrong, and returns what it measured.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from VFMVolumeLabLib.job_follower import ManualTimers

JOB_TIMEOUT_S = 600.0


def check(condition: Any, message: str) -> None:
    """``assert`` that survives ``python -O`` and says what was expected."""
    if not condition:
        raise AssertionError(message)


def follow_to_end(timers: ManualTimers, start) -> tuple[str, Any]:
    """Start a job with ``start(on_done=...)`` and fire the timers until it ended: ``(state, outcome)``."""
    done: list[tuple[str, Any]] = []
    start(on_done=lambda state, outcome: done.append((state, outcome)))
    timers.run_until(lambda: done, JOB_TIMEOUT_S)
    return done[0]


def probe_one_capture(scene, client, folder: str | Path, volume_rendering_logic=None) -> dict:
    """Capture one view of the sample CT and probe it with LiteMedSAM's real encoder on the server."""
    from VFMVolumeLabLib.probe_logic import CaptureRequest, ProbeLogic
    from VFMVolumeLabLib.sample_data_source import load_sample_with_segmentation

    folder = Path(folder)
    volume_node, _ = load_sample_with_segmentation(scene)
    timers = ManualTimers()
    logic = ProbeLogic(scene, volume_rendering_logic, timer_factory=timers)
    logic.capture(volume_node, folder / "captures", CaptureRequest(views=1, size=64))
    state, outcome = follow_to_end(timers, lambda **callbacks: logic.start_probe(
        client, folder / "captures", folder / "probes", ["litemedsam"], **callbacks))
    check(state == "finished", f"probing {state}: {outcome}")
    results = logic.load_results(folder / "probes")
    check([result.model for result in results] == ["litemedsam"], f"probed {[r.model for r in results]}")
    width, height, heads = results[0].heads_node.GetImageData().GetDimensions()
    check((width, height) == (64, 64) and heads > 1, f"per-head maps of {width} x {height} x {heads}")
    return {"heads": heads}


def deepdvr_two_epochs(scene, client, folder: str | Path, volume_rendering_logic=None) -> dict:
    """Capture six views, train a lookup-table DeepDVR for two epochs on the server, plot and apply its TF."""
    from VFMVolumeLabLib.dvr_logic import DeepDVRLogic
    from VFMVolumeLabLib.sample_data_source import load_sample_with_segmentation

    folder = Path(folder)
    volume_node, _ = load_sample_with_segmentation(scene)
    timers = ManualTimers()
    logic = DeepDVRLogic(scene, timer_factory=timers)
    captures = logic.capture_now(volume_node, folder / "captures", views=6, size=24, preset="CT-AAA",
                                 volume_rendering_logic=volume_rendering_logic)
    done: list[tuple[str, Any]] = []
    logic.on_done = lambda state, outcome: done.append((state, outcome))
    logic.start(client, captures, folder / "run", epochs=2, image_size=24, batch_size=2, validation_every=3, threads=1)
    timers.run_until(lambda: done, JOB_TIMEOUT_S)
    state, outcome = done[0]
    check(state == "finished" and outcome["epoch"] == 2, f"training {state}: {outcome}")
    check(logic.update_plot() == 2, "the plot has a row per epoch")
    display = logic.apply_learned_tf(volume_node, volume_rendering_logic=volume_rendering_logic)
    check(display.GetVisibility(), "the learned TF is shown")
    return {"best_val_ssim": outcome.get("best_val_ssim")}
