"""A job on the model server, followed like a local :class:`vfmlab.jobs.Job`, with its files mirrored here.

The panels start every training, probing, rendering and prediction job through the server (a local one
or a GPU machine): :meth:`ServerJob.start` names inputs by reference (``volume:``, ``bundle:``, ``run:``,
``job:``; see :mod:`vfmlab.server.jobs`), and each :meth:`ServerJob.poll` returns the new events and copies
the job's files that match ``mirror_patterns`` into a local ``mirror`` folder. Paths in events and in the
result point into that mirror, so code that reads a run folder (metrics, previews, a learned TF, a
prediction) reads it the same way whether the job ran here or elsewhere. ``server_job.json`` in the mirror
records the server and the job id, so a stopped run can be resumed after Slicer restarts.
"""
from __future__ import annotations

import fnmatch
import json
import os
from pathlib import Path
from typing import Any, Sequence

from ..jobs.events import JobEvent
from .http import ENDED, ModelClient, ServerError

SERVER_JOB_FILE = "server_job.json"


class ServerJob:
    """State, result, reason and events as :class:`vfmlab.jobs.Job` has them; ``poll()`` never blocks long
    (one status request, then the changed files matching ``mirror_patterns``)."""

    def __init__(self, client: ModelClient, status: dict, mirror: str | Path, mirror_patterns: Sequence[str]):
        self.client = client
        self.id = status["id"]
        self.mirror = Path(mirror)
        self.mirror_patterns = tuple(mirror_patterns)
        self.events: list[JobEvent] = []
        self._copied: dict[str, tuple[int, int]] = {}  # relative path -> (size, mtime_ns) of the copy here
        self._apply(status)

    @classmethod
    def start(cls, client: ModelClient, task: str, params: dict, mirror: str | Path,
              mirror_patterns: Sequence[str] = ("*",)) -> "ServerJob":
        """Start ``task`` on the server; ``mirror`` (created) receives its files."""
        Path(mirror).mkdir(parents=True, exist_ok=True)
        job = cls(client, client.start_job(task, params), mirror, mirror_patterns)
        job._record(task)
        return job

    @classmethod
    def resume(cls, client: ModelClient, mirror: str | Path, mirror_patterns: Sequence[str] = ("*",)) -> "ServerJob":
        """Continue the stopped job recorded in ``mirror`` from its last checkpoint, on the server that ran it."""
        return cls(client, client.resume_job(server_record(client, mirror)["id"]), mirror, mirror_patterns)

    # -- the Job interface -----------------------------------------------------------------------
    def poll(self) -> list[JobEvent]:
        """New events since the last poll (paths in them point into the mirror); copies changed files first,
        so an event's file is here when the event is handled."""
        status = self.client.job(self.id, since=len(self.events))
        new = [JobEvent.from_json(json.dumps(event)) for event in status["events"]]
        if new or status["state"] in ENDED:
            self.sync()
        self._apply(status)
        new = [JobEvent(event.kind, self._local(event.data), event.time) for event in new]
        self.events.extend(new)
        return new

    def cancel(self) -> None:
        self.client.cancel_job(self.id)

    # -- files -----------------------------------------------------------------------------------
    def sync(self) -> list[Path]:
        """Copy the job's files matching ``mirror_patterns`` that changed since the last copy; returns them."""
        copied = []
        for entry in self.client.job_files(self.id):
            relative, stamp = entry["path"], (entry["size"], entry["mtime_ns"])
            if self._copied.get(relative) == stamp or not any(fnmatch.fnmatch(relative, pattern)
                                                              for pattern in self.mirror_patterns):
                continue
            target = self.mirror / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".part")
            partial.write_bytes(self.client.job_file(self.id, relative))
            os.replace(partial, target)  # a reader never sees half a file
            self._copied[relative] = stamp
            copied.append(target)
        return copied

    def _apply(self, status: dict) -> None:
        self.folder = status["folder"]
        self.state = status["state"]
        self.result = self._local(status["result"])
        self.reason = status["reason"]

    def _local(self, value: Any) -> Any:
        """``value`` with every path inside the server's job folder turned into the same path in the mirror."""
        if isinstance(value, dict):
            return {key: self._local(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self._local(item) for item in value]
        if isinstance(value, str) and (value == self.folder or value.startswith(self.folder.rstrip("/\\") + "/")):
            return str(self.mirror / value[len(self.folder):].lstrip("/\\"))
        return value

    def _record(self, task: str) -> None:
        record = {"server": self.client.url, "server_id": self.client.health()["server_id"], "id": self.id,
                  "task": task}
        (self.mirror / SERVER_JOB_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")


def volume_reference(client: ModelClient, volume) -> str:
    """``"volume:<sha256>"`` for a :class:`vfmlab.volume.Volume` (sent when the server lacks it)."""
    return "volume:" + client.send_volume(volume.array, volume.ijk_to_ras)


def folder_reference(client: ModelClient, folder: str | Path) -> str:
    """``"bundle:<sha256>"`` for a local folder (sent when the server lacks it)."""
    return "bundle:" + client.send_folder(folder)


def server_record(client: ModelClient, mirror: str | Path) -> dict:
    """What ``mirror/server_job.json`` records (``server``, ``server_id``, ``id``, ``task``); an error unless
    ``client``'s server ran that job (a run's checkpoints and captures stay on the server that trained it).
    A server is known by the id of its work folder, so a local server started again (another port) is the same."""
    record_path = Path(mirror) / SERVER_JOB_FILE
    if not record_path.is_file():
        raise ServerError(f"{mirror} is not a run started through a model server ({SERVER_JOB_FILE} is missing); "
                          "start it from the panel first")
    record = json.loads(record_path.read_text(encoding="utf-8"))
    if record.get("server_id") != client.health()["server_id"]:
        raise ServerError(f"{mirror} was run by the model server at {record.get('server')}, not {client.url}; "
                          "point the module at that server to use it")
    return record


def run_reference(client: ModelClient, run_dir: str | Path) -> str:
    """``"job:<id>"`` of the run mirrored in ``run_dir``, for a job that reads it (rendering, prediction)."""
    return f"job:{server_record(client, run_dir)['id']}"
