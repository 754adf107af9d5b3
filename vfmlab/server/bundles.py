"""Folders sent by clients for jobs (a capture folder: views, cameras.json, the captured volume).

A folder travels as a zip archive named by the sha256 of its bytes (``PUT /bundles/{sha256}``) and is
unpacked once into ``folder/<sha256>``; a job names it ``"bundle:<sha256>"``. Archives are checked
before a byte is written: no absolute names, no ``..``, no links, and limits on the number of files
and on their unpacked size (a small archive may claim gigabytes).
"""
from __future__ import annotations

import io
import re
import shutil
import tempfile
import threading
import zipfile
from pathlib import Path, PurePosixPath

from ..errors import InputError

SHA256 = re.compile(r"[0-9a-f]{64}")


class UnknownBundle(InputError):
    """The server holds no folder by this sha256 (never sent, or from another server's run)."""


class BundleStore:
    def __init__(self, folder: Path, max_files: int = 20_000, max_unpacked_bytes: int = 8 << 30):
        self.folder = folder
        self.max_files = max_files
        self.max_unpacked_bytes = max_unpacked_bytes
        self._lock = threading.Lock()

    def __contains__(self, sha256: str) -> bool:
        # Only a sha256 names a folder here: anything else ("..", a path) could lead out of the store.
        return SHA256.fullmatch(sha256) is not None and (self.folder / sha256).is_dir()

    def path(self, sha256: str) -> Path:
        if sha256 not in self:
            raise UnknownBundle(f"folder {sha256[:12]}... is not on the server; send it (PUT /bundles/{{sha256}})")
        return self.folder / sha256

    def add(self, sha256: str, payload: bytes) -> dict:
        """Unpack a checked archive (once; a second upload of the same bytes changes nothing)."""
        if SHA256.fullmatch(sha256) is None:
            raise InputError(f"{sha256!r} is not a sha256 (64 lowercase hex digits)")
        try:
            archive = zipfile.ZipFile(io.BytesIO(payload))
        except zipfile.BadZipFile:
            raise InputError("the body is not a zip archive (send a folder with ModelClient.send_folder)") from None
        with archive:
            members = self._checked_members(archive)
            target = self.folder / sha256
            with self._lock:
                if not target.is_dir():
                    self.folder.mkdir(parents=True, exist_ok=True)
                    staging = Path(tempfile.mkdtemp(prefix=".unpacking-", dir=self.folder))
                    try:
                        for member in members:
                            archive.extract(member, staging)
                        staging.rename(target)  # whole or not at all: a job never sees half a folder
                    finally:
                        shutil.rmtree(staging, ignore_errors=True)
        return {"sha256": sha256, "files": len(members), "bytes": sum(member.file_size for member in members)}

    def _checked_members(self, archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
        members = [member for member in archive.infolist() if not member.is_dir()]
        if not members:
            raise InputError("the archive holds no files")
        if len(members) > self.max_files:
            raise InputError(f"the archive holds {len(members)} files, over the server's limit of {self.max_files}")
        unpacked = sum(member.file_size for member in members)
        if unpacked > self.max_unpacked_bytes:
            raise InputError(f"the archive unpacks to {unpacked} bytes, over the server's limit of "
                             f"{self.max_unpacked_bytes}")
        for member in members:
            name = PurePosixPath(member.filename)
            if name.is_absolute() or ".." in name.parts or "\\" in member.filename or ":" in member.filename:
                raise InputError(f"the archive names a file outside its folder: {member.filename!r}")
            if (member.external_attr >> 16) & 0o170000 == 0o120000:
                raise InputError(f"the archive holds a link ({member.filename!r}); send plain files")
        return members
