"""The panels' way to the model server, shared by every section of both modules.

A URL and token configured by the user (kept in Slicer's settings) point at a server elsewhere, e.g.
a GPU machine; without them a local server is started with Slicer's own Python on first use, on a
free port with a fresh token, and started again if it died. Model work never runs in Slicer's process:
PythonQt holds the GIL while Qt idles, so a Python thread there would barely advance.

Plain Python at import time (no ``qt``): the settings store and the timer are injected, so the logic is
tested with pytest; :func:`shared_link` wires Slicer's ``QSettings`` and the application's exit.
"""
from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from vfmlab.client import ModelClient, ServerConnection, ServerUnavailable

URL_KEY, TOKEN_KEY = "VFMVolumeLab/ServerURL", "VFMVolumeLab/ServerToken"


def slicer_python() -> str:
    """The interpreter for the local server: in Slicer, sys.executable is the Slicer application itself."""
    return shutil.which("PythonSlicer") or sys.executable


@dataclass
class ServerSettings:
    """Where the panels' server is: an empty ``url`` means a local server started on demand."""

    url: str = ""
    token: str = ""

    @classmethod
    def load(cls, store) -> "ServerSettings":
        """From a ``QSettings``-like store (``value(key, default)``)."""
        return cls(str(store.value(URL_KEY, "") or "").strip(), str(store.value(TOKEN_KEY, "") or ""))

    def save(self, store) -> None:
        store.setValue(URL_KEY, self.url.strip())
        store.setValue(TOKEN_KEY, self.token)


def vfmlab_path_env() -> dict[str, str]:
    """``PYTHONPATH`` for a server process: the folder holding ``vfmlab`` (Slicer's scripted-modules folder
    in an installed extension, which is not on ``PythonSlicer``'s own path)."""
    import vfmlab

    folder = str(Path(vfmlab.__file__).resolve().parents[1])
    inherited = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": folder + (os.pathsep + inherited if inherited else "")}


class ModelServerLink:
    """A :class:`ServerConnection` built from the settings; rebuilt when they change."""

    def __init__(self, store, python: str, folder: str | Path | None = None,
                 connection_factory: Callable[..., ServerConnection] = ServerConnection):
        self.store = store
        self.python = python
        self.folder = folder
        self.connection_factory = connection_factory
        self.settings = ServerSettings.load(store)
        self.connection = self._connect()

    def _connect(self) -> ServerConnection:
        return self.connection_factory(self.settings.url or None, self.settings.token or None, python=self.python,
                                       folder=self.folder, env=vfmlab_path_env())

    def configure(self, url: str, token: str) -> None:
        """Use another server (an empty URL: a local one); the local server, if any, is stopped."""
        settings = ServerSettings(url.strip(), token)
        if settings == self.settings:
            return
        self.connection.stop()
        settings.save(self.store)
        self.settings = settings
        self.connection = self._connect()

    def client(self) -> Optional[ModelClient]:
        """A client, or None while the local server starts; :class:`ServerUnavailable` says why it cannot start."""
        return self.connection.client()

    def describe(self) -> str:
        if self.settings.url:
            return f"model server at {self.settings.url}"
        local = self.connection.local
        if local is None:
            return "local model server (starts on first use)"
        return f"local model server at {local.url}" if local.url else "local model server starting..."

    def shutdown(self) -> None:
        self.connection.stop()


class ClientWaiter:
    """Calls ``on_ready(client)`` once the server answers, polling from a timer (never blocking Slicer);
    ``on_failed(message)`` when the server cannot start. ``on_waiting()`` on each tick while it starts."""

    def __init__(self, link: ModelServerLink, timer, interval_ms: int = 200):
        self.link = link
        self.timer = timer
        self.interval_ms = interval_ms
        self._pending: list[tuple[Callable[[ModelClient], Any], Callable[[str], Any]]] = []
        self.on_waiting: Optional[Callable[[], Any]] = None
        timer.timeout.connect(self._tick)

    def request(self, on_ready: Callable[[ModelClient], Any], on_failed: Callable[[str], Any]) -> None:
        self._pending.append((on_ready, on_failed))
        self._tick()
        if self._pending:
            self.timer.start(self.interval_ms)

    def _tick(self) -> None:
        if not self._pending:
            self.timer.stop()
            return
        try:
            client = self.link.client()
        except ServerUnavailable as error:
            message = str(error)
            self._settle(lambda callbacks: callbacks[1](message))
            return
        if client is None:
            if self.on_waiting is not None:
                self.on_waiting()
            return
        self._settle(lambda callbacks: callbacks[0](client))

    def _settle(self, call: Callable[[tuple], Any]) -> None:
        self.timer.stop()
        pending, self._pending = self._pending, []
        for callbacks in pending:
            call(callbacks)

    def cancel(self) -> None:
        self._pending.clear()
        self.timer.stop()


_shared_link: Optional[ModelServerLink] = None


def shared_link() -> ModelServerLink:
    """The one link of this Slicer session: settings in ``QSettings``; the local server stops when Slicer quits."""
    global _shared_link
    if _shared_link is None:
        import qt
        import slicer

        folder = Path(slicer.app.temporaryPath) / "VFMVolumeLab" / "server"
        _shared_link = ModelServerLink(qt.QSettings(), slicer_python(), folder)
        slicer.app.connect("aboutToQuit()", _shared_link.shutdown)
    return _shared_link
