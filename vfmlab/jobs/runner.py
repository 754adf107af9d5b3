"""Client side of a job: start the process, collect its events without blocking, cancel its tree."""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Literal, Mapping

from vfmlab.errors import JobError
from vfmlab.jobs.events import EVENTS_FILE, JobEvent, append_event

JobState = Literal["running", "finished", "failed", "cancelled"]

CONFIG_FILE = "job.json"
LOG_FILE = "job.log"
# How long to keep reading after the process exited: an orphaned grandchild that inherited the
# pipe (e.g. a forked worker) would otherwise keep the job "running" forever.
_PIPE_DRAIN_S = 2.0
_LOG_TAIL_LINES = 20


class Job:
    """A running or ended job process. Create with :meth:`Job.start`; call :meth:`poll` from a timer."""

    def __init__(self, process: subprocess.Popen[str], workdir: Path):
        self.process = process
        self.workdir = workdir
        self.state: JobState = "running"
        self.result: dict[str, Any] | None = None
        self.reason: str | None = None
        self.events: list[JobEvent] = []
        self._unpolled: list[JobEvent] = []
        self._queue: queue.Queue[JobEvent] = queue.Queue()
        self._reader_done = threading.Event()
        self._cancel_requested = False
        self._exited_at: float | None = None
        threading.Thread(target=self._read, name=f"vfmlab-job-{process.pid}", daemon=True).start()

    @classmethod
    def start(
        cls,
        task: str,
        params: Mapping[str, Any],
        workdir: str | Path,
        module: str | None = None,
        python: str = sys.executable,
        env: Mapping[str, str] | None = None,
        resume: bool = False,
    ) -> Job:
        """Launch ``python -m vfmlab.jobs workdir/job.json`` in its own process group.

        ``module`` is imported first so its tasks are registered; ``env`` is layered over this
        process's environment; ``resume`` reaches the task as ``params["resume"]`` and keeps the
        previous log and event history instead of truncating them.
        """
        workdir = Path(workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {
            "task": task,
            "params": dict(params),
            "log_file": str(workdir / LOG_FILE),
            "events_file": str(workdir / EVENTS_FILE),
            "resume": resume,
        }
        if module:
            config["module"] = module
        try:
            config_text = json.dumps(config, indent=2)
        except TypeError as exc:
            raise JobError(f"job params for task {task!r} must be JSON-serializable: {exc}") from exc
        config_path = workdir / CONFIG_FILE
        config_path.write_text(config_text, encoding="utf-8")
        if not resume:
            for name in (LOG_FILE, EVENTS_FILE):
                (workdir / name).write_text("", encoding="utf-8")

        with open(workdir / LOG_FILE, "ab") as log_handle:
            try:
                process = subprocess.Popen(
                    [python, "-m", "vfmlab.jobs", str(config_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=log_handle,
                    env=_child_env(env),
                    text=True,
                    encoding="utf-8",
                    errors="replace",
                    **_own_process_group(),
                )
            except OSError as exc:
                raise JobError(f"could not start job {task!r} with {python}: {exc}") from exc
        return cls(process, workdir)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def log_file(self) -> Path:
        return self.workdir / LOG_FILE

    def poll(self) -> list[JobEvent]:
        """Events received since the last poll; never blocks. Updates :attr:`state` when the job ended."""
        self._pump()
        new, self._unpolled = self._unpolled, []
        return new

    def wait(self, timeout: float | None = None) -> JobState:
        """Block until the job ended or ``timeout`` seconds passed; return the state.

        Events stay queued for the next :meth:`poll`.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        self._pump()
        while self.state == "running" and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.05)
            self._pump()
        return self.state

    def cancel(self, grace: float = 5.0) -> None:
        """Stop the job and everything it started; returns at once.

        SIGTERM goes to the whole process group, SIGKILL follows after ``grace`` seconds (or as soon
        as the job process exits, for children that ignored SIGTERM). :attr:`state` becomes
        ``"cancelled"`` once the process is gone; use :meth:`wait` to block until then.
        """
        if self._cancel_requested or self.state != "running" or self.process.poll() is not None:
            return
        self._cancel_requested = True
        _signal_tree(self.process, force=False)
        threading.Thread(target=self._escalate, args=(grace,), daemon=True).start()

    def _escalate(self, grace: float) -> None:
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            pass
        # Also after the leader exited: members of its group that ignored SIGTERM are still there.
        _signal_tree(self.process, force=True)

    def _read(self) -> None:
        """Reader thread: parse stdout lines into the queue until EOF."""
        assert self.process.stdout is not None
        try:
            for line in self.process.stdout:
                line = line.strip()
                if not line:
                    continue
                try:
                    event = JobEvent.from_json(line)
                except ValueError:
                    # Output that bypassed the protocol is kept as a log message rather than dropped.
                    event = JobEvent("log", {"message": line})
                self._queue.put(event)
        finally:
            self._reader_done.set()

    def _pump(self) -> None:
        self._drain_queue()
        if self.state != "running":
            return
        code = self.process.poll()
        if code is None:
            return
        if self._exited_at is None:
            self._exited_at = time.monotonic()
        if not self._reader_done.is_set() and time.monotonic() - self._exited_at < _PIPE_DRAIN_S:
            return
        self._drain_queue()  # lines read between the first drain and the reader finishing
        self._conclude(code)

    def _drain_queue(self) -> None:
        while True:
            try:
                event = self._queue.get_nowait()
            except queue.Empty:
                return
            self.events.append(event)
            self._unpolled.append(event)

    def _conclude(self, code: int) -> None:
        outcome = next((e for e in reversed(self.events) if e.kind in ("finished", "failed")), None)
        if outcome is not None and outcome.kind == "finished":
            self.state, self.result = "finished", outcome.data.get("result")
            return
        if self._cancel_requested:
            self.state, self.reason = "cancelled", "cancelled by user"
            self._record(JobEvent("cancelled", {"reason": self.reason}))
        elif outcome is not None:
            self.state, self.reason = "failed", str(outcome.data.get("reason", "job failed"))
        else:
            self.state, self.reason = "failed", self._crash_reason(code)
            self._record(JobEvent("failed", {"reason": self.reason, "error_type": "JobCrashed", "exit_code": code}))

    def _record(self, event: JobEvent) -> None:
        """Add an event the process could not send itself, to this session and to the history file."""
        self.events.append(event)
        self._unpolled.append(event)
        append_event(self.workdir / EVENTS_FILE, event)

    def _crash_reason(self, code: int) -> str:
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            how = f"was killed by {name} (exit code {code})"
        else:
            how = f"exited with code {code}"
        tail = _tail(self.log_file, _LOG_TAIL_LINES)
        return f"job process {how} without reporting a result; last lines of {self.log_file}:\n{tail}"


def _child_env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {**os.environ, **(extra or {})}
    # Inside Slicer, vfmlab is importable through sys.path entries the child interpreter lacks.
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    return env


def _own_process_group() -> dict[str, Any]:
    if os.name == "nt":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


def _signal_tree(process: subprocess.Popen[str], force: bool) -> None:
    """SIGTERM (or SIGKILL with ``force``) to the job's process group, i.e. the job and its descendants."""
    if os.name == "nt":
        # No process-group signals on Windows; taskkill /T walks the tree and can only force.
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(process.pid)], capture_output=True, check=False)
        return
    try:
        os.killpg(process.pid, signal.SIGKILL if force else signal.SIGTERM)
    except ProcessLookupError:
        pass  # the whole group is already gone


def _tail(path: Path, lines: int) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return "".join(deque(handle, maxlen=lines)).rstrip("\n")
    except OSError as exc:
        return f"(log unreadable: {exc})"
