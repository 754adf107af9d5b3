"""DeepDVR training: a lookup TF learned from Slicer captures re-renders in Slicer, every model of the
registry learns, stepsize annealing, resume, data-parallel equivalence, and capture checks."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from vfmlab.dvr.captures import load_training_set
from vfmlab.dvr.checkpoints import BEST, LAST, TF_JSON, TF_VP, dvr_run, load_checkpoint
from vfmlab.dvr.inference import TrainedRun, slicer_rerender_ssim
from vfmlab.dvr.models import model_names
from vfmlab.dvr.train import TrainConfig, train
from vfmlab.errors import InputError
from vfmlab.progress import SilentReporter
from vfmlab.render.capture import RenderSettings, SegmentLabels, capture_views, render_file
from vfmlab.render.poses import Orbit, orbit_records

HEAD_PRESET = dict(preset="CT-Bone", shift=1024.0, shading=False)  # headsq is HU + 1024


@pytest.fixture(scope="module")
def small_captures(small_head, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("small_captures")
    render_file(small_head, out, RenderSettings(width=24, height=24, **HEAD_PRESET), Orbit(views=6, elevation=20.0))
    return out


def tiny_config(captures: Path, model: str = "lookup", **changes) -> TrainConfig:
    config = TrainConfig(captures=str(captures), model=model, epochs=4, batch_size=2, image_size=24, s_low=0.5,
                         s_high=1.0, validation_every=3, threads=1)
    return replace(config, **changes)


def test_lookup_tf_learned_from_slicer_captures_rerenders_in_slicer_on_held_out_views(shared_data, tmp_path):
    """TF reconstruction (paper Sec. 4.1): CT-Bone captures -> lookup TF -> Slicer re-render, SSIM >= 0.95."""
    render_file(shared_data / "vtkdata" / "headsq_quarter.nrrd", tmp_path / "captures",
                RenderSettings(width=96, height=96, **HEAD_PRESET), Orbit(views=20, elevation=20.0))
    config = TrainConfig(captures=str(tmp_path / "captures"), epochs=10, batch_size=4)
    result = train(config, tmp_path / "run")
    assert result["epoch"] == 10 and not result["stopped"]
    run = dvr_run(tmp_path / "run")
    metrics = run.metrics()
    assert [row["epoch"] for row in metrics] == list(range(1, 11))
    assert set(metrics[0]) == {"step", "epoch", "train_loss", "val_ssim", "sampling_rate", "seconds"}
    best = load_checkpoint(run, BEST)
    assert best["best_ssim"] == max(row["val_ssim"] for row in metrics)
    # the summary reads the run both ways: the last epoch beside the best, and the time to a target SSIM
    assert result["last_val_ssim"] == metrics[-1]["val_ssim"] and run.summary() == result
    first_good = next(n for n, row in enumerate(metrics) if row["val_ssim"] >= 0.9)
    assert result["seconds_to_val_ssim"]["0.9"] == pytest.approx(sum(r["seconds"] for r in metrics[: first_good + 1]))
    assert run.file(TF_VP).is_file() and json.loads(run.file(TF_JSON).read_text())["scalar_opacity"]

    trained = TrainedRun.load(run.path)
    data = trained.training_set()
    _, held_out = data.split(config.validation_every)
    scores, _ = slicer_rerender_ssim(trained.learned_tf(), data, held_out)
    assert len(scores) == 4 and min(scores) >= 0.95, scores


@pytest.mark.parametrize("model", model_names())
def test_every_registry_model_trains_a_few_epochs_with_falling_loss(small_captures, tmp_path, model):
    config = tiny_config(small_captures, model, size="small")
    result = train(config, tmp_path / model)
    losses = [row["train_loss"] for row in dvr_run(tmp_path / model).metrics()]
    assert result["epoch"] == 4 and len(losses) == 4
    assert losses[-1] < losses[0], losses


def test_semantic_colouring_targets_from_segment_ids(small_head, tmp_path):
    """Label-coloured captures (segment IDs coloured by segment) train a deep model on the intensities."""
    from vfmlab import mrml

    scene = mrml.new_scene()
    node = mrml.load_volume_node(scene, small_head)
    volume = mrml.volume_from_node(node)
    labels = np.where(volume.array > 1400, 2, np.where(volume.array > 900, 1, 0)).astype(np.uint16)
    colors = {1: (0.9, 0.6, 0.5), 2: (1.0, 1.0, 0.9)}
    records = orbit_records(volume, Orbit(views=3, elevation=20.0), 24, 24)
    capture_views(scene, node, records, tmp_path / "captures", RenderSettings(width=24, height=24, **HEAD_PRESET),
                  labels=SegmentLabels(labels, {1: "soft tissue", 2: "bone"}, colors, mode="first"),
                  source_path=small_head)
    data = load_training_set(tmp_path / "captures", targets="labels")
    found = np.unique(data.images[0].reshape(-1, 3), axis=0)
    expected = np.array([(0.0, 0.0, 0.0), (0.9, 0.6, 0.5), (1.0, 1.0, 0.9)], dtype=np.float32)
    assert found.shape == (3, 3) and np.allclose(np.sort(found, axis=0), np.sort(expected, axis=0))
    render_file(small_head, tmp_path / "plain", RenderSettings(width=16, height=16, **HEAD_PRESET), Orbit(views=1))
    with pytest.raises(InputError, match="segment-ID"):
        load_training_set(tmp_path / "plain", targets="labels")
    config = tiny_config(tmp_path / "captures", "dvrnet", targets="labels", epochs=3, batch_size=1)
    train(config, tmp_path / "run")
    losses = [row["train_loss"] for row in dvr_run(tmp_path / "run").metrics()]
    assert losses[-1] < losses[0]


def test_stepsize_annealing_schedule():
    config = TrainConfig(captures="-", epochs=10, s_low=0.1, s_high=2.0)
    rates = [config.sampling_rate(e) for e in range(1, 11)]
    assert rates[0] == pytest.approx(0.1 * 0.99 + 0.01 * 2.0)  # paper Eq. 14 at e/E = 0.1
    assert rates[-1] == pytest.approx(2.0) and all(a < b for a, b in zip(rates, rates[1:]))
    assert {replace(config, anneal=False).sampling_rate(e) for e in (1, 5, 10)} == {2.0}


def test_stopped_run_resumes_to_the_same_result_as_an_uninterrupted_one(small_captures, tmp_path):
    config = tiny_config(small_captures, epochs=4)
    train(config, tmp_path / "straight")

    run = dvr_run(tmp_path / "stopped")

    class StopAfterEpochTwo(SilentReporter):
        def metric(self, name, value, step=None):
            if step == 2:
                run.request_stop()

    first = train(config, run.path, StopAfterEpochTwo())
    assert first["stopped"] and first["epoch"] == 2 and len(run.metrics()) == 2
    assert run.summary()["epoch"] == 2
    run.clear_stop()
    second = train(None, run.path, resume=True)
    assert second["epoch"] == 4 and [row["epoch"] for row in run.metrics()] == [1, 2, 3, 4]
    resumed = load_checkpoint(run, LAST)["model_state"]
    straight = load_checkpoint(dvr_run(tmp_path / "straight"), LAST)["model_state"]
    for name in straight:
        torch.testing.assert_close(resumed[name], straight[name], atol=1e-6, rtol=1e-5)


def test_two_process_ddp_equals_one_process_with_the_same_global_batch(small_captures, tmp_path):
    config = tiny_config(small_captures, epochs=2, batch_size=2)
    train(config, tmp_path / "single")
    run = dvr_run(tmp_path / "ddp")
    run.path.mkdir()
    run.write_config(asdict(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             "-m", "vfmlab.dvr.train", str(run.path)], capture_output=True, text=True, env=env,
                            timeout=180)
    assert result.returncode == 0, result.stderr[:4000]  # a failing rank's own message comes before torchrun's summary
    ddp = load_checkpoint(run, LAST)["model_state"]
    single = load_checkpoint(dvr_run(tmp_path / "single"), LAST)["model_state"]
    for name in single:
        torch.testing.assert_close(ddp[name], single[name], atol=1e-5, rtol=1e-4)
    assert [round(r["train_loss"], 5) for r in run.metrics()] == \
        [round(r["train_loss"], 5) for r in dvr_run(tmp_path / "single").metrics()]


def test_captured_volume_is_checked_by_sha256(small_captures, small_head, shared_data, tmp_path):
    assert len(load_training_set(small_captures, volume_path=small_head).views) == 6
    other = shared_data / "vtkdata" / "headsq_quarter.nrrd"
    with pytest.raises(InputError, match="SHA-256"):
        load_training_set(small_captures, volume_path=other)
    moved = tmp_path / "captures"
    moved.mkdir()
    for item in small_captures.iterdir():
        (moved / item.name).write_bytes(item.read_bytes())
    record = json.loads((moved / "cameras.json").read_text())
    record["volume_path"] = str(tmp_path / "gone.nrrd")
    (moved / "cameras.json").write_text(json.dumps(record))
    with pytest.raises(InputError, match="--volume"):
        load_training_set(moved)


def test_edited_captures_load_at_their_own_size_but_must_keep_the_aspect(small_captures, tmp_path):
    """Captures repainted in an image editor (here: channels swapped, saved at twice the size)."""
    from PIL import Image

    edited = tmp_path / "edited"
    edited.mkdir()
    for item in small_captures.iterdir():
        (edited / item.name).write_bytes(item.read_bytes())
    original = load_training_set(small_captures)
    for view in original.views:
        with Image.open(edited / view.image) as image:
            red, green, blue = image.convert("RGB").split()
            Image.merge("RGB", (blue, green, red)).resize((48, 48), Image.NEAREST).save(edited / view.image)
    data = load_training_set(edited)
    assert data.images[0].shape == (48, 48, 3)
    target = data.targets([0], 24, 24)[0]
    # the edit shows (red now holds the blue channel), resampled back to the training size
    assert float((target[0] - torch.as_tensor(original.images[0][..., 2])).abs().mean()) < 0.01
    assert float((target[0] - torch.as_tensor(original.images[0][..., 0])).abs().mean()) > 0.02
    with Image.open(edited / original.views[1].image) as image:
        image.resize((48, 30)).save(edited / original.views[1].image)
    with pytest.raises(InputError, match="aspect ratio"):
        load_training_set(edited)


def test_corrupt_checkpoint_gives_a_clear_error(small_captures, tmp_path):
    config = tiny_config(small_captures, epochs=1)
    train(config, tmp_path / "run")
    (tmp_path / "run" / LAST).write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="is corrupt or not a DeepDVR checkpoint") as error:
        train(None, tmp_path / "run", resume=True)
    assert "weights_only" not in str(error.value), "never advise loading an unknown file with code execution"
