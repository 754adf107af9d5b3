"""Background jobs: protocol, logging, failure modes, cancellation of process trees, Slicer wrapper.

Every test runs real subprocesses (``python -m vfmlab.jobs``); each takes well under a second.
"""
from __future__ import annotations

import json
import sys
import textwrap
import time
from pathlib import Path

import pytest

from vfmlab.jobs import EVENTS_FILE, LOG_FILE, Job, JobEvent, known_tasks, read_events

from conftest import wait_for

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 15.0
PROTOCOL_KINDS = {"started", "progress", "metric", "artifact", "log", "finished", "failed"}

# Tasks that misbehave on purpose, loaded by the job through the config's "module".
TEST_TASKS = textwrap.dedent(
    '''
    import os, signal, subprocess, sys, time
    from vfmlab.jobs import register_task

    @register_task("test_noisy")
    def noisy(params, reporter):
        print("stray print from the task")
        os.write(1, b"raw write to fd 1\\n")
        subprocess.run([sys.executable, "-c", "print('stdout of a grandchild')"], check=True)
        sys.stderr.write("a line on stderr\\n")
        reporter.progress(1.0, "done")
        return {"ok": True}

    @register_task("test_spawn")
    def spawn(params, reporter):
        if params.get("ignore_term"):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        code = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "print('ready', flush=True); time.sleep(60)")
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        child.stdout.readline()  # SIGTERM is ignored from here on
        reporter.log(f"grandchild {child.pid}")
        while True:
            time.sleep(0.05)
    '''
)


@pytest.fixture(scope="module")
def task_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("tasks")
    (folder / "jobtest_tasks.py").write_text(TEST_TASKS, encoding="utf-8")
    return {"PYTHONPATH": str(folder)}


def run(task: str, params: dict, workdir: Path, **kwargs) -> Job:
    job = Job.start(task, params, workdir, **kwargs)
    assert job.wait(TIMEOUT) != "running", "job did not end in time"
    return job


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (an orphan may wait a while to be reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def test_echo_events_arrive_in_order_with_payloads(tmp_path: Path) -> None:
    params = {
        "metrics": [{"name": "loss", "value": 0.5, "step": 1}, {"name": "loss", "value": 0.25, "step": 2}],
        "artifacts": [{"kind": "checkpoint", "path": "/tmp/ckpt.pt"}],
    }
    job = run("echo", params, tmp_path)
    events = job.poll()

    assert job.state == "finished"
    assert [e.kind for e in events] == ["started", "metric", "metric", "artifact", "finished"]
    assert events[0].data == {"task": "echo", "pid": job.pid}
    assert events[1].data == {"name": "loss", "value": 0.5, "step": 1}
    assert events[2].data == {"name": "loss", "value": 0.25, "step": 2}
    assert events[3].data == {"kind": "checkpoint", "path": "/tmp/ckpt.pt"}
    assert job.result == {**params, "resume": False}
    assert all(e.time > 0 for e in events) and [e.time for e in events] == sorted(e.time for e in events)
    assert job.poll() == [], "poll returns only new events"


def test_progress_is_reported_each_step(tmp_path: Path) -> None:
    job = run("sleep", {"seconds": 0.15, "steps": 3}, tmp_path)
    progress = [e.data for e in job.poll() if e.kind == "progress"]
    assert job.state == "finished" and job.result == {"steps": 3}
    assert [round(p["fraction"], 3) for p in progress] == [0.333, 0.667, 1.0]
    assert progress[-1]["message"] == "step 3/3"


def test_poll_does_not_block(tmp_path: Path) -> None:
    job = Job.start("sleep", {"seconds": 30, "steps": 300}, tmp_path)
    try:
        began = time.monotonic()
        job.poll()
        assert time.monotonic() - began < 0.1
        assert job.state == "running"
    finally:
        job.cancel(grace=1.0)
        job.wait(TIMEOUT)


def test_fail_gives_readable_reason_and_traceback_in_log(tmp_path: Path) -> None:
    job = run("fail", {"message": "volume has NaNs"}, tmp_path)
    failed = [e for e in job.poll() if e.kind == "failed"]

    assert job.state == "failed"
    assert job.reason == "volume has NaNs"
    assert failed[0].data == {"reason": "volume has NaNs", "error_type": "VfmlabError"}
    log = (tmp_path / LOG_FILE).read_text()
    assert "Traceback (most recent call last)" in log and "fail_task" in log
    assert 'started {"task": "fail"' in log and "failed {" in log


def test_stray_output_goes_to_log_not_protocol(tmp_path: Path, task_env: dict[str, str]) -> None:
    job = run("test_noisy", {}, tmp_path, module="jobtest_tasks", env=task_env)
    events = job.poll()

    assert job.state == "finished", job.reason
    assert job.result == {"ok": True}
    assert [e.kind for e in events] == ["started", "progress", "finished"]
    log = (tmp_path / LOG_FILE).read_text()
    for text in ("stray print from the task", "raw write to fd 1", "stdout of a grandchild", "a line on stderr"):
        assert text in log


def test_crash_reports_exit_code_and_log_tail(tmp_path: Path) -> None:
    job = run("crash", {}, tmp_path)
    assert job.state == "failed"
    assert "exited with code 3" in job.reason
    assert "crash task: exiting with code 3" in job.reason, "the log tail is part of the reason"
    last = job.poll()[-1]
    assert last.kind == "failed" and last.data["exit_code"] == 3


def test_unknown_task_lists_known_tasks(tmp_path: Path) -> None:
    job = run("no_such_task", {}, tmp_path)
    assert job.state == "failed"
    assert "unknown task 'no_such_task'" in job.reason
    assert {"sleep", "fail", "crash", "echo"} <= set(known_tasks())
    for name in ("sleep", "fail", "crash", "echo"):
        assert name in job.reason


def test_cancel_running_sleep(tmp_path: Path) -> None:
    job = Job.start("sleep", {"seconds": 60, "steps": 600}, tmp_path)
    assert wait_for(lambda: any(e.kind == "progress" for e in job.poll()))
    began = time.monotonic()
    job.cancel()

    assert job.wait(TIMEOUT) == "cancelled"
    assert time.monotonic() - began < 3.0
    assert job.process.poll() is not None
    assert read_events(tmp_path)[-1].kind == "cancelled"
    assert "cancelled: received SIGTERM" in (tmp_path / LOG_FILE).read_text()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc to see grandchildren")
@pytest.mark.parametrize("ignore_term", [False, True], ids=["job-exits-on-sigterm", "job-ignores-sigterm"])
def test_cancel_kills_grandchild_that_ignores_sigterm(
    tmp_path: Path, task_env: dict[str, str], ignore_term: bool
) -> None:
    job = Job.start("test_spawn", {"ignore_term": ignore_term}, tmp_path, module="jobtest_tasks", env=task_env)
    logs: list[JobEvent] = []
    assert wait_for(lambda: bool(logs.extend(e for e in job.poll() if e.kind == "log") or logs)), job.reason
    grandchild = int(logs[0].data["message"].split()[-1])
    assert alive(grandchild)

    job.cancel(grace=0.5)
    assert job.wait(TIMEOUT) == "cancelled"
    assert wait_for(lambda: not alive(grandchild), timeout=5.0), "grandchild survived the cancel"
    assert not alive(job.pid)


def test_history_is_kept_and_resume_reaches_task(tmp_path: Path) -> None:
    first = run("echo", {"metrics": [{"name": "dice", "value": 0.9}]}, tmp_path)
    history = read_events(tmp_path)
    assert [e.kind for e in history] == [e.kind for e in first.poll()] == ["started", "metric", "finished"]
    for line in (tmp_path / EVENTS_FILE).read_text().splitlines():
        assert {"event", "time"} <= json.loads(line).keys()

    resumed = run("echo", {}, tmp_path, resume=True)
    assert resumed.result == {"resume": True}
    assert json.loads((tmp_path / "job.json").read_text())["resume"] is True
    assert [e.kind for e in read_events(tmp_path)] == ["started", "metric", "finished", "started", "finished"]

    run("echo", {}, tmp_path)
    assert [e.kind for e in read_events(tmp_path)] == ["started", "finished"], "a fresh start resets history"


def test_read_events_of_missing_workdir_is_empty(tmp_path: Path) -> None:
    assert read_events(tmp_path / "never-started") == []


@pytest.fixture
def follower_cls():
    sys.path.insert(0, str(REPO / "VFMVolumeLab"))
    try:
        from VFMVolumeLabLib.job_follower import JobFollower

        yield JobFollower
    finally:
        sys.path.remove(str(REPO / "VFMVolumeLab"))


def drive(timer) -> None:
    assert wait_for(lambda: timer.fire() or not timer.active), "on_done never fired"


def test_follower_dispatches_progress_and_done(tmp_path: Path, follower_cls, fake_timers) -> None:
    progress, kinds, done = [], [], []
    process = follower_cls(
        lambda: Job.start("sleep", {"seconds": 0.15, "steps": 3}, tmp_path),
        on_progress=lambda fraction, message: progress.append((round(fraction, 3), message)),
        on_event=lambda event: kinds.append(event.kind),
        on_done=lambda state, outcome: done.append((state, outcome)),
        timer_factory=fake_timers,
    )
    timer = fake_timers[-1]
    process.start()
    assert timer.active and process.is_running
    drive(timer)

    assert progress == [(0.333, "step 1/3"), (0.667, "step 2/3"), (1.0, "step 3/3")]
    assert kinds == ["started", "progress", "progress", "progress", "finished"]
    assert done == [("finished", {"steps": 3})]
    assert not process.is_running


def test_follower_cancel(tmp_path: Path, follower_cls, fake_timers) -> None:
    done = []
    process = follower_cls(
        lambda: Job.start("sleep", {"seconds": 60, "steps": 600}, tmp_path),
        on_done=lambda state, outcome: done.append((state, outcome)),
        timer_factory=fake_timers,
    )
    timer = fake_timers[-1]
    process.start()
    process.cancel()
    drive(timer)
    assert done == [("cancelled", "cancelled by user")]
