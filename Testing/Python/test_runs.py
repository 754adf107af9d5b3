"""The shared training-run folder (vfmlab.runs): layout, fresh start vs resume, metrics, stop, damaged files."""
from __future__ import annotations

import json

import pytest
import torch

from vfmlab.errors import InputError
from vfmlab.runs import BEST, CONFIG, LAST, METRICS, STOP, SUMMARY, RunFolder, load_run_file, seconds_to_reach


class Recorder:
    """A Reporting that keeps what it was told."""

    def __init__(self):
        self.metrics, self.progress_calls = [], []

    def progress(self, fraction, message=""):
        self.progress_calls.append((fraction, message))

    def metric(self, name, value, step=None):
        self.metrics.append((name, value, step))

    def artifact(self, kind, path):
        pass

    def log(self, message):
        pass


def finished_run(tmp_path) -> RunFolder:
    run = RunFolder(tmp_path / "run", "test")
    run.begin({"epochs": 2}, resume=False)
    for step in (1, 2):
        run.append_metrics({"step": step, "loss": 1.0 / step})
    for name in (LAST, BEST):
        run.save_state(name, {"weights": torch.ones(2)})
    run.write_summary({"done": True})
    (run.path / "product.json").write_text("{}")
    return run


def test_a_new_run_clears_the_previous_runs_files_but_keeps_a_pending_stop(tmp_path):
    run = finished_run(tmp_path)
    run.request_stop()
    run.begin({"epochs": 3}, resume=False, products=("product.json",))
    assert sorted(p.name for p in run.path.iterdir()) == sorted([CONFIG, STOP])
    assert run.read_config() == {"epochs": 3} and run.metrics() == [] and run.summary() is None
    assert run.stop_requested()
    run.clear_stop()
    assert not run.stop_requested()


def test_a_resumed_run_keeps_its_files_and_refuses_other_settings_where_the_pillar_needs_the_same(tmp_path):
    run = finished_run(tmp_path)
    run.begin({"epochs": 4}, resume=True)  # DeepDVR and fine-tuning may continue with more epochs
    assert run.read_config() == {"epochs": 4} and len(run.metrics()) == 2 and run.file(LAST).is_file()
    with pytest.raises(InputError, match="other settings"):
        run.begin({"epochs": 5}, resume=True, same_config=True)
    run.begin({"epochs": 4}, resume=True, same_config=True)  # tuples and lists compare as JSON does
    assert run.summary() == {"done": True}


def test_metrics_survive_a_partial_last_line_and_are_cut_back_to_the_checkpoint(tmp_path):
    run = finished_run(tmp_path)
    with open(run.file(METRICS), "a", encoding="utf-8") as handle:
        handle.write('{"step": 3, "lo')  # a process killed mid-write
    assert [row["step"] for row in run.metrics()] == [1, 2]
    run.keep_metrics_through(1)
    assert run.metrics() == [{"step": 1, "loss": 1.0}]
    # rows written by DeepDVR before the shared layout carry only "epoch"
    run.file(METRICS).write_text("".join(json.dumps({"epoch": e}) + "\n" for e in (1, 2, 3)))
    run.keep_metrics_through(2)
    assert [row["epoch"] for row in run.metrics()] == [1, 2]


def test_record_epoch_writes_the_row_and_reports_its_numbers_and_progress(tmp_path):
    run = RunFolder(tmp_path / "run")
    run.begin({}, resume=False)
    reporter = Recorder()
    run.record_epoch({"step": 3, "stage": "finetune", "epoch": 1, "loss": 0.5, "dice": {"a": 1.0},
                      "nan": float("nan")}, reporter, 0.75, "finetune epoch 1/1")
    assert run.metrics()[-1]["loss"] == 0.5
    assert reporter.metrics == [("finetune_loss", 0.5, 3)]  # numbers only, finite, named by stage
    assert reporter.progress_calls == [(0.75, "finetune epoch 1/1")]


def test_a_kill_while_an_epoch_is_saved_never_leaves_a_checkpoint_ahead_of_the_metrics(tmp_path, monkeypatch):
    """A cancel can kill the process between the metrics row and the checkpoint; the resume must
    then find the row (and drop it), never a checkpoint whose epoch has no row (a gap in the curve)."""
    run = finished_run(tmp_path)  # rows 1, 2; last.pt at step 2
    saved = []

    def killed_while_saving(self, name, state):
        saved.append((name, self.metrics()[-1]["step"]))
        raise KeyboardInterrupt  # the process dies here

    monkeypatch.setattr(RunFolder, "save_state", killed_while_saving)
    reporter = Recorder()
    with pytest.raises(KeyboardInterrupt):
        run.record_epoch({"step": 3, "loss": 0.2}, reporter, 0.3, "epoch 3", {LAST: {"step": 3}})
    assert saved == [(LAST, 3)]  # the row was on disk before the checkpoint was written
    assert reporter.metrics == []  # nothing reported for an epoch that is not saved
    run.keep_metrics_through(2)  # what the resume from last.pt (step 2) does
    assert [row["step"] for row in run.metrics()] == [1, 2]


def test_damaged_or_foreign_files_are_refused_without_advice_to_run_their_code(tmp_path):
    run = finished_run(tmp_path)
    run.file(LAST).write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="is corrupt or not a test checkpoint") as error:
        run.load_state(LAST, "test checkpoint")
    assert "weights_only" not in str(error.value)

    torch.save({"object": Recorder()}, run.file(BEST))  # a pickled object: loading it would run code
    with pytest.raises(InputError, match="not a file of tensors and plain values"):
        load_run_file(run.file(BEST), "test checkpoint")
    with pytest.raises(InputError, match="has no test summary"):
        load_run_file(run.file(SUMMARY + ".pt"), "test summary")
    with pytest.raises(InputError, match="is not a test run folder"):
        RunFolder(tmp_path / "elsewhere", "test").read_config()


def test_seconds_to_reach_sums_the_epochs_until_the_target_and_is_none_when_never_reached():
    rows = [{"seconds": 2.0, "val": 0.5}, {"seconds": 3.0, "val": 0.92}, {"seconds": 4.0, "val": 0.96}]
    assert seconds_to_reach(rows, "val", 0.9) == 5.0
    assert seconds_to_reach(rows, "val", 0.95) == 9.0
    assert seconds_to_reach(rows, "val", 0.99) is None
