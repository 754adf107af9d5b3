"""A client of the model server (``vfmlab serve``) on the standard library's ``urllib``.

The Slicer panels, ``vfmlab segment --server`` and the tests use it. Every call is one short HTTP
request; long work (propagation, encoding ahead, jobs) is started by one call and followed by polling
its status, so a panel's timer never blocks on the model.
"""
from __future__ import annotations

import hashlib
import http.client
import io
import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VfmlabError
from .wire import decode_mask, encode_volume

ENDED = ("finished", "failed", "cancelled")


class ServerError(VfmlabError):
    """The server answered with an error; ``status`` is the HTTP status, the message the server's."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class ServerUnavailable(ServerError):
    """The server could not be reached (not started, stopped, crashed, or the network is down)."""


@dataclass
class SliceMask:
    axis: str
    index: int
    mask: np.ndarray  # bool (rows, cols) in the slice's display orientation
    iou: float  # the model's own estimate of the mask's IoU


@dataclass
class VolumeMask:
    axis: str
    slices: tuple[int, int]  # first and last slice with a mask, along ``axis``
    mask: np.ndarray  # bool (K, J, I) on the volume's grid
    stop_reasons: dict[str, str]


class ModelClient:
    """Talks to one server at ``url`` with a bearer ``token``."""

    def __init__(self, url: str, token: str, timeout: float = 60.0):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    # -- transport -------------------------------------------------------------------------------
    def request(self, method: str, path: str, body: dict | bytes | None = None, timeout: float | None = None) -> Any:
        """One request; the decoded JSON answer. Raises :class:`ServerError` / :class:`ServerUnavailable`."""
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        data = None
        if isinstance(body, bytes):
            data, headers["Content-Type"] = body, "application/octet-stream"
        elif body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode("utf-8"), "application/json"
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        return json.loads(self._send(request, f"{method} {path}", timeout) or b"null")

    def _send(self, request: urllib.request.Request, what: str, timeout: float | None = None) -> bytes:
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as error:
            raise ServerError(f"{what}: {_error_message(error)}", error.code) from None
        except (urllib.error.URLError, ConnectionError, socket.timeout, TimeoutError, http.client.HTTPException) as error:
            reason = getattr(error, "reason", error)
            raise ServerUnavailable(f"the model server at {self.url} does not answer ({reason}); "
                                    "start it (vfmlab serve) or check the URL in the module's settings") from None

    def health(self) -> dict:
        return self.request("GET", "/health", timeout=5.0)

    def models(self) -> dict:
        return self.request("GET", "/models")

    # -- volumes ---------------------------------------------------------------------------------
    def send_volume(self, array: np.ndarray, ijk_to_ras: np.ndarray) -> str:
        """Make sure the server holds the volume; returns its sha256. Sent only when the server lacks it."""
        payload, sha256 = encode_volume(array, ijk_to_ras)
        if not self._holds(sha256):
            self.request("PUT", f"/volumes/{sha256}", payload, timeout=max(self.timeout, 600.0))
        return sha256

    def _holds(self, sha256: str) -> bool:
        try:
            self.request("GET", f"/volumes/{sha256}")
            return True
        except ServerError as error:
            if error.status == 404:
                return False
            raise

    def send_folder(self, folder: str | Path) -> str:
        """Make sure the server holds the files under ``folder`` (for a job: name it ``"bundle:<sha256>"``);
        returns the sha256 of its archive. Sent only when the server lacks it."""
        payload = folder_archive(folder)
        sha256 = hashlib.sha256(payload).hexdigest()
        try:
            self.request("GET", f"/bundles/{sha256}")
        except ServerError as error:
            if error.status != 404:
                raise
            self.request("PUT", f"/bundles/{sha256}", payload, timeout=max(self.timeout, 600.0))
        return sha256

    def metrics(self, prediction: np.ndarray, reference: np.ndarray, ijk_to_ras: np.ndarray) -> dict:
        """Dice, IoU, precision, recall and HD95 (mm) of two ``(K, J, I)`` masks on one volume grid."""
        named = [self.send_volume(np.asarray(mask, bool).astype(np.uint8), ijk_to_ras)
                 for mask in (prediction, reference)]
        return self.request("POST", "/metrics", {"prediction": named[0], "reference": named[1]})

    # -- segmentation ----------------------------------------------------------------------------
    def segment(self, model: str, volume: str, axis: str, index: int, box=None, points=(), labels=()) -> SliceMask:
        """Prompt -> mask on one slice of a volume the server holds (see :meth:`send_volume`)."""
        answer = self.request("POST", "/segment", _prompt(model, volume, axis, index, box, points, labels))
        return SliceMask(answer["axis"], answer["index"], decode_mask(answer["mask"]), answer["iou"])

    def start_propagation(self, model: str, volume: str, axis: str, index: int, box=None, points=(), labels=(),
                          preset: str = "default", rules: dict | None = None, seeds=()) -> dict:
        """Start propagating a seed prompt, with more ``seeds`` ``(index, box, points, labels)`` on other slices
        of the axis when given (one segment prompted at several slices, e.g. its key slices); returns the
        operation's status (``id``, ``done`` of ``total``)."""
        body = {**_prompt(model, volume, axis, index, box, points, labels), "preset": preset, "rules": rules or {},
                "seeds": [_slice_prompt(*seed) for seed in seeds]}
        return self.request("POST", "/propagations", body)

    def start_encoding(self, model: str, volume: str, axis: str, indices: list[int] | None = None) -> dict:
        return self.request("POST", "/encodings", {"model": model, "volume": volume, "axis": axis,
                                                   "indices": indices})

    def operation(self, operation_id: str) -> dict:
        return self.request("GET", f"/operations/{operation_id}")

    def cancel_operation(self, operation_id: str) -> dict:
        return self.request("DELETE", f"/operations/{operation_id}")

    def propagation_mask(self, operation_id: str) -> VolumeMask:
        answer = self.request("GET", f"/operations/{operation_id}/mask", timeout=max(self.timeout, 300.0))
        return VolumeMask(answer["axis"], tuple(answer["slices"]), decode_mask(answer["mask"]),
                          answer["stop_reasons"])

    def wait_operation(self, operation_id: str, on_status: Callable[[dict], None] | None = None,
                       poll_s: float = 0.2, timeout: float | None = None) -> dict:
        """Poll until the operation ended (for scripts and tests; panels poll from a timer instead)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self.operation(operation_id)
            if on_status is not None:
                on_status(status)
            if status["state"] in ENDED:
                return status
            if deadline is not None and time.monotonic() > deadline:
                raise ServerError(f"operation {operation_id} still {status['state']} after {timeout:g} s")
            time.sleep(poll_s)

    # -- jobs ------------------------------------------------------------------------------------
    def start_job(self, task: str, params: dict) -> dict:
        """Start a job (``dvr-train``, ``segment-finetune``, ``btvae-train``, ``probe``, ...) on the server.

        Name sent volumes as ``"volume:<sha256>"`` and paths in the job's own folder as ``"run:<path>"``.
        """
        return self.request("POST", "/jobs", {"task": task, "params": params})

    def job(self, job_id: str, since: int = 0) -> dict:
        """State, result and the events from number ``since`` on (``count`` is the next ``since``)."""
        return self.request("GET", f"/jobs/{job_id}?since={int(since)}")

    def cancel_job(self, job_id: str) -> dict:
        return self.request("DELETE", f"/jobs/{job_id}")

    def resume_job(self, job_id: str) -> dict:
        return self.request("POST", f"/jobs/{job_id}/resume")

    def job_files(self, job_id: str) -> list[dict]:
        """Every file of the job's folder: ``{"path", "size", "mtime_ns"}``."""
        return self.request("GET", f"/jobs/{job_id}/files")["files"]

    def job_file(self, job_id: str, relative: str) -> bytes:
        request = urllib.request.Request(f"{self.url}/jobs/{job_id}/files/{urllib.parse.quote(relative)}",
                                         headers={"Authorization": f"Bearer {self.token}"})
        return self._send(request, f"job file {relative}", timeout=max(self.timeout, 600.0))


def folder_archive(folder: str | Path) -> bytes:
    """The files under ``folder`` as a zip archive whose bytes depend only on their names and contents
    (sorted, fixed dates), so the same folder always has the same sha256 and is sent once."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VfmlabError(f"{folder} is not a folder")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def _prompt(model: str, volume: str, axis: str, index: int, box, points, labels) -> dict:
    return {"model": model, "volume": volume, "axis": axis, **_slice_prompt(index, box, points, labels)}


def _slice_prompt(index: int, box, points, labels) -> dict:
    return {"index": int(index), "box": None if box is None else [float(v) for v in box],
            "points": [[float(x), float(y)] for x, y in np.asarray(points, float).reshape(-1, 2)],
            "labels": [int(label) for label in np.asarray(labels, int).reshape(-1)]}


def _error_message(error: urllib.error.HTTPError) -> str:
    try:
        return json.loads(error.read())["error"]
    except (ValueError, KeyError, TypeError, OSError):
        return f"HTTP {error.code} {error.reason}"
