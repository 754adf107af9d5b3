"""BT-VAE training on real CT slices: every model's loss falls; resume after an interruption or a
cancelled background job continues where the atomic checkpoint left off."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vfmlab.btvae.checkpoint import load_trained
from vfmlab.btvae.config import TrainConfig
from vfmlab.btvae.data import load_sources
from vfmlab.btvae.registry import MODEL_NAMES
from vfmlab.btvae.run import train_run
from vfmlab.btvae.run_folder import btvae_run, finished_summary
from vfmlab.btvae.tasks import TASK_MODULE, TRAIN_TASK, train_job_params
from vfmlab.errors import InputError
from vfmlab.jobs import Job, read_events
from vfmlab.progress import SilentReporter


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def ct_sources(shared_data):
    return [{"volume": str(shared_data / "totalseg" / "example_ct.nii.gz"),
             "labels": str(shared_data / "totalseg" / "example_seg_fast_force_split.nii.gz")}]


def small_config(size: int, pretrain_epochs: int, epochs: int) -> TrainConfig:
    config = TrainConfig.cpu(size, pretrain_epochs, epochs)
    config.inference_samples = 2
    return config


def history(run_dir: Path) -> list[dict]:
    return btvae_run(run_dir).metrics()


def losses(rows: list[dict], stage: str) -> list[float]:
    return [float(row["loss"]) for row in rows if row["stage"] == stage]


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_each_model_trains_on_real_ct_slices_with_falling_loss(model, ct_sources, tmp_path):
    config = small_config(64, pretrain_epochs=2, epochs=6)
    metrics = train_run(tmp_path, ct_sources, "5", model, config)
    rows = history(tmp_path)
    finetune = losses(rows, "finetune")
    assert len(finetune) == 6
    assert np.mean(finetune[-2:]) < finetune[0]
    pretrain = losses(rows, "pretrain")
    if model in ("btvae", "bt-unet"):
        assert len(pretrain) == 2 and pretrain[-1] < pretrain[0]
    else:
        assert pretrain == []
    for name in ("dice", "iou", "precision", "recall"):
        assert 0.0 <= metrics[name] <= 1.0
    assert metrics["negative_slices"] > 0 and metrics["slices"] > metrics["negative_slices"]
    assert json.loads((tmp_path / "summary.json").read_text()) == pytest.approx(metrics)
    trained = load_trained(tmp_path)
    assert trained.name == model and trained.probabilistic == (model in ("btvae", "vae"))
    assert not (tmp_path / "last.pt").exists()


class Interrupt(Exception):
    pass


class InterruptAt:
    """Reporter that raises once the given stage reports the given epoch (after its checkpoint was due)."""

    def __init__(self, stage: str, epoch: int):
        self.stage, self.epoch = stage, epoch

    def progress(self, fraction, message=""):
        if message.startswith(f"{self.stage} epoch {self.epoch}/"):
            raise Interrupt()

    def metric(self, name, value, step=None):
        pass

    def log(self, message):
        pass


def test_resume_after_interruption_in_stage_1_reproduces_the_uninterrupted_run(ct_sources, tmp_path):
    config = small_config(32, pretrain_epochs=3, epochs=3)
    slices = load_sources(ct_sources, "5", config.data, 32)
    reference = train_run(tmp_path / "whole", ct_sources, "5", "btvae", config, slices=slices)
    interrupted = tmp_path / "interrupted"
    with pytest.raises(Interrupt):
        train_run(interrupted, ct_sources, "5", "btvae", config, slices=slices, reporter=InterruptAt("pretrain", 2))
    assert (interrupted / "last.pt").is_file() and not (interrupted / "model.pt").exists()
    resumed = train_run(interrupted, ct_sources, "5", "btvae", config, slices=slices, resume=True)
    whole, again = history(tmp_path / "whole"), history(interrupted)
    assert [(r["stage"], r["epoch"]) for r in again] == [(r["stage"], r["epoch"]) for r in whole]
    np.testing.assert_allclose([float(r["loss"]) for r in again], [float(r["loss"]) for r in whole], rtol=1e-4)
    assert resumed["dice"] == pytest.approx(reference["dice"], abs=1e-6)
    # A finished run resumes to its stored metrics; other settings are refused.
    assert train_run(interrupted, ct_sources, "5", "btvae", config, resume=True) == resumed
    other = small_config(32, pretrain_epochs=3, epochs=4)
    (interrupted / "summary.json").unlink()
    with pytest.raises(InputError, match="other settings"):
        train_run(interrupted, ct_sources, "5", "btvae", other, resume=True)


def test_cancelled_training_job_resumes_from_its_checkpoint(ct_sources, tmp_path):
    config = small_config(32, pretrain_epochs=0, epochs=40)
    params = train_job_params(tmp_path, ct_sources, "5", "unet", config, threads=1)
    job = Job.start(TRAIN_TASK, params, tmp_path, module=TASK_MODULE)

    def epochs_reported() -> int:
        return max((e.data.get("step") or 0 for e in read_events(tmp_path)
                    if e.kind == "metric" and e.data.get("name") == "finetune_loss"), default=0)

    assert job.wait(0.05) == "running"
    deadline = 60.0
    while epochs_reported() < 3 and job.wait(0.05) == "running" and deadline > 0:
        deadline -= 0.05
    job.cancel()
    assert job.wait(30) == "cancelled"
    assert (tmp_path / "last.pt").is_file() and not (tmp_path / "model.pt").exists()

    resumed = Job.start(TRAIN_TASK, params, tmp_path, module=TASK_MODULE, resume=True)
    assert resumed.wait(120) == "finished", resumed.reason
    logs = [e.data["message"] for e in resumed.events if e.kind == "log"]
    resumed_after = [int(m.rsplit(" ", 1)[1]) for m in logs if m.startswith("resuming finetune after epoch")]
    assert resumed_after and resumed_after[0] >= 3
    epochs = [int(row["epoch"]) for row in history(tmp_path)]
    assert epochs == list(range(1, 41))  # every epoch exactly once across the two processes
    assert resumed.result["metrics"]["model"] == "unet"
    assert any(e.kind == "artifact" and e.data["kind"] == "model" for e in resumed.events)


class StopAt(SilentReporter):
    """Asks the run to stop (its STOP file) once the given step is reported."""

    def __init__(self, run_dir: Path, step: int):
        self.run, self.step = btvae_run(run_dir), step

    def metric(self, name, value, step=None):
        if step == self.step:
            self.run.request_stop()


def test_stop_file_ends_the_run_after_the_batch_and_resume_finishes_it(ct_sources, tmp_path):
    config = small_config(32, pretrain_epochs=0, epochs=4)
    slices = load_sources(ct_sources, "5", config.data, 32)
    stopped = train_run(tmp_path, ct_sources, "5", "unet", config, slices=slices, reporter=StopAt(tmp_path, 2))
    assert stopped == {"stopped": True, "step": 2, "run_dir": str(tmp_path)}
    assert (tmp_path / "last.pt").is_file() and not (tmp_path / "model.pt").exists()
    assert [row["step"] for row in history(tmp_path)] == [1, 2]
    btvae_run(tmp_path).clear_stop()
    metrics = train_run(tmp_path, ct_sources, "5", "unet", config, slices=slices, resume=True)
    assert metrics["model"] == "unet" and [row["step"] for row in history(tmp_path)] == [1, 2, 3, 4]


def test_runs_in_the_layout_before_the_shared_one_resume_and_load(ct_sources, tmp_path):
    """checkpoint.pt (history inside), history.csv, metrics.json: what earlier versions wrote."""
    config = small_config(32, pretrain_epochs=0, epochs=4)
    slices = load_sources(ct_sources, "5", config.data, 32)
    run = btvae_run(tmp_path)
    train_run(run.path, ct_sources, "5", "unet", config, slices=slices, reporter=StopAt(run.path, 3))
    state = torch.load(run.file("last.pt"), weights_only=True)
    rows = [{k: v for k, v in row.items() if k != "step"} for row in history(run.path)]
    torch.save({**{k: v for k, v in state.items() if k != "step"}, "history": rows}, run.file("checkpoint.pt"))
    for name in ("last.pt", "metrics.jsonl", "STOP"):
        run.file(name).unlink()
    metrics = train_run(run.path, ct_sources, "5", "unet", config, slices=slices, resume=True)
    assert [row["step"] for row in history(run.path)] == [1, 2, 3, 4]
    assert not run.file("checkpoint.pt").exists() and not run.file("last.pt").exists()
    # a finished run of the old layout: its metrics.json is the summary it resumes to
    run.file("summary.json").rename(run.file("metrics.json"))
    assert train_run(run.path, ct_sources, "5", "unet", config, resume=True) == metrics
    assert finished_summary(run.path) == metrics and load_trained(run.path).name == "unet"
