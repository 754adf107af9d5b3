"""Training and probe jobs started by clients, run by the job runner in the server's machine.

A client cannot name files on the server, so job parameters name them by reference: ``"volume:<sha256>"``
is a volume the client sent (written once as NRRD), ``"bundle:<sha256>"`` a folder it sent
(:mod:`.bundles`), ``"run:<relative path>"`` a path inside the job's own folder (``workdir/jobs/<id>``),
``"job:<id>/<relative path>"`` one inside an earlier job's folder (a trained run that a rendering or
prediction job reads). The job's files are listed by ``GET /jobs/{id}/files`` and read back one by one.
"""
from __future__ import annotations

import importlib
import json
import threading
import uuid
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..jobs import CONFIG_FILE, Job, get_task, known_tasks
from .bundles import BundleStore
from .state import VolumeStore

# The pillars' task modules: importing them registers their tasks (dvr-train, probe, btvae-*, segment-finetune).
TASK_MODULES = ("vfmlab.dvr.tasks", "vfmlab.probes.tasks", "vfmlab.btvae.tasks", "vfmlab.segment.tasks",
                "vfmlab.keyslices.tasks")
VOLUME_REF, BUNDLE_REF, RUN_REF, JOB_REF = "volume:", "bundle:", "run:", "job:"


def task_names() -> list[str]:
    for module in TASK_MODULES:
        importlib.import_module(module)
    return known_tasks()


class JobBoard:
    """Jobs by id, each in its own folder under ``folder``."""

    def __init__(self, folder: Path, store: VolumeStore, bundles: BundleStore):
        self.folder = folder
        self.store = store
        self.bundles = bundles
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def start(self, task: str, params: dict[str, Any]) -> tuple[str, Job]:
        tasks = task_names()
        if task not in tasks:
            raise InputError(f"unknown task {task!r}; the server runs {', '.join(tasks)}")
        job_id = uuid.uuid4().hex
        workdir = self.folder / job_id
        resolved = self._resolve(params, workdir)
        job = Job.start(task, resolved, workdir, module=get_task(task).__module__)
        with self._lock:
            self._jobs[job_id] = job
        return job_id, job

    def resume(self, job_id: str) -> Job:
        """Start an ended job again in its folder with ``resume``; its task continues from its checkpoint.

        A job of an earlier run of this server (same work folder) is resumed from its folder too."""
        with self._lock:
            previous = self._jobs.get(job_id)
        if previous is not None:
            previous.poll()  # settles its state
            if previous.state == "running":
                raise InputError(f"job {job_id} is still running")
        workdir = self._folder_of(job_id)
        if not (workdir / CONFIG_FILE).is_file():
            raise KeyError(job_id)
        config = _job_config(workdir)
        job = Job.start(config["task"], config["params"], workdir, module=config.get("module"), resume=True)
        with self._lock:
            self._jobs[job_id] = job
        return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise KeyError(job_id)
        job.poll()  # moves events into job.events and settles the state
        return job

    def file(self, job_id: str, relative: str) -> Path:
        """A file inside the job's folder; a path leading outside it is refused."""
        path = _inside(self.get(job_id).workdir, relative)
        if path is None or not path.is_file():
            raise KeyError(relative)
        return path

    def files(self, job_id: str) -> list[dict[str, Any]]:
        """Every file of the job's folder: ``{"path": relative POSIX path, "size", "mtime_ns"}``."""
        workdir = self.get(job_id).workdir
        found = []
        for path in sorted(workdir.rglob("*")):
            if path.is_file() and not path.is_symlink():
                stat = path.stat()
                found.append({"path": path.relative_to(workdir).as_posix(), "size": stat.st_size,
                              "mtime_ns": stat.st_mtime_ns})
        return found

    def _folder_of(self, job_id: str) -> Path:
        if not job_id.isalnum():
            raise KeyError(job_id)
        return self.folder / job_id

    def shutdown(self) -> None:
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.cancel(grace=2.0)
        for job in jobs:
            job.wait(5.0)

    def _resolve(self, value: Any, workdir: Path) -> Any:
        if isinstance(value, dict):
            return {key: self._resolve(item, workdir) for key, item in value.items()}
        if isinstance(value, list):
            return [self._resolve(item, workdir) for item in value]
        if isinstance(value, str) and value.startswith(VOLUME_REF):
            return str(self.store.file(value[len(VOLUME_REF):]))
        if isinstance(value, str) and value.startswith(BUNDLE_REF):
            return str(self.bundles.path(value[len(BUNDLE_REF):]))
        if isinstance(value, str) and value.startswith(RUN_REF):
            path = _inside(workdir, value[len(RUN_REF):])
            if path is None:
                raise InputError(f"{value!r} leads outside the job's folder")
            return str(path)
        if isinstance(value, str) and value.startswith(JOB_REF):
            job_id, _, relative = value[len(JOB_REF):].partition("/")
            try:
                folder = self._folder_of(job_id)
            except KeyError:
                folder = None
            if folder is None or not folder.is_dir():
                raise InputError(f"{value!r}: this server has no job {job_id}")
            path = _inside(folder, relative or ".")
            if path is None:
                raise InputError(f"{value!r} leads outside that job's folder")
            return str(path)
        return value


def _inside(folder: Path, relative: str) -> Path | None:
    """``folder / relative``, or None when it leads outside ``folder`` (``..``, an absolute path, a link)."""
    path = (folder / relative).resolve()
    return path if path.is_relative_to(folder.resolve()) else None


def _job_config(workdir: Path) -> dict[str, Any]:
    return json.loads((workdir / CONFIG_FILE).read_text(encoding="utf-8"))
