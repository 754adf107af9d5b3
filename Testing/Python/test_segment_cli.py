"""`vfmlab segment`, `segment-eval` and fine-tuning (CLI, background job with cancel and resume)."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import slicerio
import torch

from vfmlab.cli import main
from vfmlab.volume_io import read_labels, read_volume
from vfmlab.jobs import Job
from vfmlab.progress import SilentReporter
from vfmlab.segment.config import SegmenterFinetuneConfig
from vfmlab.segment.finetune import finetune, finetune_run

SPLEEN = 1


@pytest.fixture(scope="module")
def sample(shared_data):
    ct_path = shared_data / "totalseg" / "example_ct.nii.gz"
    labels_path = shared_data / "totalseg" / "example_seg_fast_force_split.nii.gz"
    ct = read_volume(ct_path)
    return ct_path, labels_path, ct, read_labels(labels_path, ct)


def test_segment_then_eval_through_the_cli(tmp_path, sample, capsys):
    ct_path, labels_path, ct, labels = sample
    k = 97  # an axial slice through the spleen; on this volume axial slices are K, in-plane axes I and J
    j, i = np.nonzero(labels[k] == SPLEEN)
    box = f"{i.min()},{j.min()},{i.max()},{j.max()}"
    out = tmp_path / "spleen.seg.nrrd"
    assert main(["segment", str(ct_path), "--slice", str(k), "--box", box, "--name", "spleen", "--out", str(out)]) == 0
    assert main(["segment", str(ct_path), "--slice", str(k), "--points", f"{int(i.mean())},{int(j.mean())},1",
                 "--name", "spleen", "--out", str(out)]) == 0
    names = [s["name"] for s in slicerio.read_segmentation(str(out))["segments"]]
    assert names == ["spleen", "spleen (2)"], "the second run must add a segment, not overwrite the first"

    table = tmp_path / "metrics.csv"
    capsys.readouterr()
    assert main(["segment-eval", str(out), str(labels_path), "--labels", f"spleen={SPLEEN}", "--out", str(table)]) == 0
    printed = capsys.readouterr().out
    row = next(csv.DictReader(table.open()))
    reference_on_slice = (labels[k] == SPLEEN).sum()
    # one slice segmented: recall is bounded by that slice's share of the spleen, precision must be high
    assert float(row["precision"]) > 0.85
    assert float(row["recall"]) == pytest.approx(float(row["predicted_voxels"]) * float(row["precision"])
                                                 / (labels == SPLEEN).sum(), rel=1e-6)
    assert int(row["predicted_voxels"]) == pytest.approx(reference_on_slice, rel=0.2)
    assert "dice" in printed and "spleen" in printed
    assert main(["segment-eval", str(out), str(labels_path), "--labels", "liver=5"]) == 2  # no such segment


def test_prompts_named_alike_make_one_segment_seeded_at_each(tmp_path, sample, capsys):
    """The spleen prompted on two slices (as at two key slices): one segment, the slices between both seeds
    filled, ``--range`` limiting only the walks beyond them; prompts that cannot form one segment refused."""
    ct_path, _, _, labels = sample
    specs = []
    for k in (93, 101):
        j, i = np.nonzero(labels[k] == SPLEEN)
        specs.append({"slice": k, "box": [int(i.min()), int(j.min()), int(i.max()), int(j.max())], "name": "spleen"})
    prompts, out = tmp_path / "prompts.json", tmp_path / "spleen.seg.nrrd"
    prompts.write_text(json.dumps(specs))
    assert main(["segment", str(ct_path), "--prompts", str(prompts), "--propagate", "--range", "1",
                 "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)["segments"]
    assert len(summary) == 1 and summary[0]["prompted"] == [93, 101] and summary[0]["slices"] == [92, 102]
    written = read_labels(out, read_volume(ct_path)) > 0
    assert np.flatnonzero(written.any(axis=(1, 2))).tolist() == list(range(92, 103))

    for bad, words in (([specs[0], {**specs[1], "axis": "coronal", "slice": 60}], "lie on ['axial', 'coronal']"),
                       ([specs[0], {**specs[0], "box": [1, 1, 5, 5]}], "two prompts on axial slice 93")):
        prompts.write_text(json.dumps(bad))
        assert main(["segment", str(ct_path), "--prompts", str(prompts), "--out", str(tmp_path / "no.seg.nrrd")]) == 2
        assert words in capsys.readouterr().err and not (tmp_path / "no.seg.nrrd").exists()


def test_finetune_job_cancel_resume_and_improvement(tmp_path, sample, monkeypatch):
    """Runs as the Slicer panel runs it: a background job; cancelled after its first epoch, then resumed."""
    monkeypatch.setenv("VFMLAB_WEIGHTS_DIR", str(tmp_path / "weights"))
    ct_path, labels_path, _, _ = sample
    run_dir = tmp_path / "run"
    config = {"segments": {"kidney_right": 2, "pancreas": 7}, "max_slices_per_segment": 10, "epochs": 40,
              "learning_rate": 1e-3, "device": "cpu"}
    params = {"volume": str(ct_path), "labels": str(labels_path), "run_dir": str(run_dir), "config": config}
    env = {"VFMLAB_WEIGHTS_DIR": str(tmp_path / "weights"), "OMP_NUM_THREADS": "2"}
    job = Job.start("segment-finetune", params, tmp_path / "job", module="vfmlab.segment.tasks", env=env)
    epochs_seen = []
    while job.state == "running" and not epochs_seen:
        epochs_seen += [e for e in job.poll() if e.kind == "metric" and e.data["name"] == "mean_val_dice"]
        job.wait(0.5)
    assert epochs_seen, f"no epoch finished: {job.reason}"
    job.cancel()
    assert job.wait(30) == "cancelled"
    done = finetune_run(run_dir).metrics()
    assert (run_dir / "last.pt").is_file() and (run_dir / "embeddings.pt").is_file()

    config["epochs"] = len(done) + 3
    params["register_as"] = "kidney_pancreas_hq"
    resumed = Job.start("segment-finetune", params, tmp_path / "job", module="vfmlab.segment.tasks",
                        env=env, resume=True)
    assert resumed.wait(600) == "finished", resumed.reason
    history = finetune_run(run_dir).metrics()
    assert [h["epoch"] for h in history] == list(range(1, len(done) + 4))
    assert history[: len(done)] == done, "resuming must continue the run, not restart it"
    summary = resumed.result
    baseline = np.mean(list(summary["baseline_dice"].values()))
    print(f"fine-tuning HQ-LiteMedSAM: held-out Dice {summary['baseline_dice']} un-tuned -> "
          f"best {summary['best_mean_val_dice']:.3f} (un-tuned mean {baseline:.3f})")
    assert summary["improved"] and summary["best_mean_val_dice"] > baseline
    messages = [e.data["message"] for e in resumed.events if e.kind == "progress"]
    assert any(m.startswith("cached features") for m in messages)
    assert not any(m.startswith("encoding") for m in messages), "the resumed run encoded slices again"

    from vfmlab.segment.registry import build_segmenter

    tuned = build_segmenter("kidney_pancreas_hq", device="cpu")
    assert tuned.name == "kidney_pancreas_hq" and tuned.hq


def test_finetune_cli_mini_batches_and_cosine_schedule(tmp_path, sample, capsys, monkeypatch):
    monkeypatch.setenv("VFMLAB_WEIGHTS_DIR", str(tmp_path / "weights"))
    ct_path, labels_path, ct, labels = sample
    run_dir = tmp_path / "run"
    capsys.readouterr()
    assert main(["segment-finetune", str(ct_path), str(labels_path), "--segments", f"spleen={SPLEEN}",
                 "--max-slices", "6", "--epochs", "2", "--batch-size", "2", "--cosine", "--lr", "1e-3",
                 "--device", "cpu", "--out", str(run_dir)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["train_slices"] == 4 and summary["held_out_slices"] == 2 and summary["epochs_run"] == 2
    last = torch.load(run_dir / "last.pt", weights_only=True)
    assert last["scheduler"]["last_epoch"] == 2 * 2  # 4 training slices in batches of 2, for 2 epochs
    assert last["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.0, abs=1e-12)  # cosine reached its end
    run = finetune_run(run_dir)
    assert run.read_config()["epochs"] == 2 and run.summary()["epochs_run"] == 2
    assert [row["step"] for row in run.metrics()] == [1, 2]

    # A run written before the shared layout kept its epochs in history.json: it still resumes.
    legacy = [{k: v for k, v in row.items() if k != "step"} for row in run.metrics()]
    (run_dir / "history.json").write_text(json.dumps(legacy))
    run.file("metrics.jsonl").unlink()
    resume = ["segment-finetune", str(ct_path), str(labels_path), "--segments", f"spleen={SPLEEN}", "--max-slices", "6",
              "--batch-size", "2", "--lr", "1e-3", "--device", "cpu", "--resume", "--out", str(run_dir)]
    assert main(resume + ["--epochs", "3"]) == 0
    assert json.loads(capsys.readouterr().out)["epochs_run"] == 3
    assert [row["step"] for row in run.metrics()] == [1, 2, 3] and run.metrics()[:2] == [
        {"step": row["epoch"], **row} for row in legacy]

    # A stop request ('RUN_DIR/STOP', written while the run trains) ends it before its next batch.
    class StopAfterEpochFour(SilentReporter):
        def metric(self, name, value, step=None):
            if step == 4:
                run.request_stop()

    config = SegmenterFinetuneConfig(segments={"spleen": SPLEEN}, max_slices_per_segment=6, epochs=6, batch_size=2,
                                     learning_rate=1e-3, device="cpu")
    stopped = finetune(ct, labels, config, run_dir, resume=True, reporter=StopAfterEpochFour())
    assert stopped["stopped"] and stopped["epochs_run"] == 4 and run.summary()["stopped"]
    assert torch.load(run.file("last.pt"), weights_only=True)["epoch"] == 4
    # the next launch is a new request: an old STOP file does not stop it
    assert main(resume + ["--epochs", "5"]) == 0
    assert json.loads(capsys.readouterr().out)["epochs_run"] == 5 and not run.stop_requested()
    assert main(["segment-finetune", str(ct_path), str(labels_path), "--segments", f"spleen={SPLEEN}",
                 "--batch-size", "0", "--out", str(tmp_path / "bad")]) == 2


def test_learning_rate_factor_is_constant_or_cosine():
    from vfmlab.segment.finetune import learning_rate_factor

    constant = learning_rate_factor(SegmenterFinetuneConfig(epochs=4), steps_per_epoch=5)
    cosine = learning_rate_factor(SegmenterFinetuneConfig(epochs=4, cosine_schedule=True), steps_per_epoch=5)
    assert [constant(s) for s in (0, 10, 20)] == [1.0, 1.0, 1.0]
    assert [cosine(s) for s in (0, 10, 20, 30)] == pytest.approx([1.0, 0.5, 0.0, 0.0])


def test_finetune_options_left_out_take_the_config_defaults():
    """segment-finetune states no default of its own: each option left out is None on the command line."""
    import argparse

    from vfmlab.segment.commands import _configure_finetune

    parser = argparse.ArgumentParser()
    _configure_finetune(parser)
    args = parser.parse_args(["ct.nrrd", "labels.nrrd", "--segments", "spleen=1", "--out", "run"])
    assert all(getattr(args, name) is None for name in ("model", "axis", "epochs", "lr", "batch_size", "max_slices"))
