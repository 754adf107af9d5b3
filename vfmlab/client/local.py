"""Start a model server on this machine for the panels: a free port, a fresh token, no thread.

The server runs as ``python -m vfmlab serve --port 0 --ready-file F`` (in Slicer, ``python`` is
``PythonSlicer``); it writes ``F`` once it listens. :meth:`LocalServer.ready` only checks that file, so
a panel polls it from a timer without blocking Slicer. A server that fails to start is reported with
the tail of its log.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .http import ModelClient, ServerUnavailable

TOKEN_ENV = "VFMLAB_TOKEN"  # the server reads its token here: an argument would show in the process list
LOG_TAIL_LINES = 15


class LocalServer:
    """One server process owned by the caller; :meth:`stop` ends it (and everything it started)."""

    def __init__(self, python: str = sys.executable, folder: str | Path | None = None, options: tuple[str, ...] = (),
                 env: dict[str, str] | None = None):
        self.python = python
        self.folder = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="vfmlab-server-"))
        self.options = tuple(options)
        self.env = dict(env or {})
        self.token = secrets.token_urlsafe(24)
        self.process: subprocess.Popen | None = None
        self.url: str | None = None

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *_) -> None:
        self.stop()

    @property
    def ready_file(self) -> Path:
        return self.folder / "listening.json"

    @property
    def log_file(self) -> Path:
        return self.folder / "server.log"

    def start(self) -> "LocalServer":
        """Launch the process and return at once; poll :meth:`ready`."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.ready_file.unlink(missing_ok=True)
        env = {**os.environ, **self.env, TOKEN_ENV: self.token, "PYTHONUNBUFFERED": "1"}
        command = [self.python, "-m", "vfmlab", "serve", "--port", "0", "--ready-file", str(self.ready_file),
                   *self.options]
        with open(self.log_file, "ab") as log:
            try:
                self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                                start_new_session=os.name != "nt")
            except OSError as error:
                raise ServerUnavailable(f"could not start the model server with {self.python}: {error}") from None
        return self

    def ready(self) -> bool:
        """True once the server listens; raises :class:`ServerUnavailable` (with its log's tail) if it died."""
        if self.process is None:
            raise ServerUnavailable("the model server was not started")
        code = self.process.poll()
        if code is not None:
            raise ServerUnavailable(f"the model server stopped with status {code}; its log ends:\n{self.log_tail()}")
        if self.url is None and self.ready_file.is_file():
            try:
                self.url = json.loads(self.ready_file.read_text(encoding="utf-8"))["url"]
            except (ValueError, KeyError):
                pass  # written while we read it; the next poll sees all of it
        return self.url is not None

    def wait_ready(self, timeout: float = 120.0) -> ModelClient:
        """Block until the server listens (scripts and tests); returns a client for it."""
        deadline = time.monotonic() + timeout
        while not self.ready():
            if time.monotonic() > deadline:
                tail = self.log_tail()
                self.stop()
                raise ServerUnavailable(f"the model server did not start within {timeout:g} s; its log ends:\n{tail}")
            time.sleep(0.1)
        return self.client()

    def client(self, timeout: float = 60.0) -> ModelClient:
        if self.url is None:
            raise ServerUnavailable("the model server is not ready yet")
        return ModelClient(self.url, self.token, timeout)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        """Ask the server to shut down (it cancels its work), kill it after ``grace`` seconds."""
        if not self.alive():
            return
        _signal_group(self.process, signal.SIGTERM)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            _signal_group(self.process, signal.SIGKILL)
            self.process.wait()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        if not self.log_file.is_file():
            return "(no log)"
        return "\n".join(self.log_file.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


class ServerConnection:
    """The panels' way to a server: a configured ``url`` and ``token`` (e.g. a GPU machine), or else a
    local server started on first use and started again when it died (a crash, an out-of-memory kill).

    :meth:`client` never blocks: it returns None while a local server starts, so a timer polls it.
    """

    def __init__(self, url: str | None = None, token: str | None = None, python: str = sys.executable,
                 folder: str | Path | None = None, options: tuple[str, ...] = (), env: dict[str, str] | None = None):
        self.url, self.token = url, token
        self.python, self.folder, self.options, self.env = python, folder, tuple(options), dict(env or {})
        self.local: LocalServer | None = None
        self.restarts = 0

    def client(self) -> ModelClient | None:
        """A client for a server that listens, or None while the local one starts.

        Raises :class:`ServerUnavailable` when a local server fails before it ever listened (its log
        says why; starting it again would fail the same way).
        """
        if self.url:
            return ModelClient(self.url, self.token or "")
        if self.local is not None and not self.local.alive() and self.local.url is not None:
            self.local, self.restarts = None, self.restarts + 1  # it served, then died: start a new one
        if self.local is None:
            self.local = LocalServer(self.python, self.folder, self.options, self.env).start()
        return self.local.client() if self.local.ready() else None

    def wait_client(self, timeout: float = 180.0) -> ModelClient:
        """Block until the server answers (scripts, tests and Slicer's self-tests; panels poll :meth:`client`)."""
        deadline = time.monotonic() + timeout
        while (client := self.client()) is None:
            if time.monotonic() > deadline:
                raise ServerUnavailable(f"the local model server did not start within {timeout:g} s:\n"
                                        f"{self.local.log_tail() if self.local else ''}")
            time.sleep(0.1)
        return client

    def stop(self) -> None:
        if self.local is not None:
            self.local.stop()
            self.local = None


def _signal_group(process: subprocess.Popen, signal_number: int) -> None:
    """Signal the server and the jobs it started (its own session on POSIX)."""
    if os.name == "nt":
        process.kill()
    else:
        try:
            os.killpg(process.pid, signal_number)
        except ProcessLookupError:
            pass  # it ended meanwhile
