"""The model registry: built-in entries from ``models.json`` plus the user's fine-tuned models.

Built-in entries ship with the package; user entries live in ``user_models.json`` inside
:func:`cache_dir`, beside the weight files they describe.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

from vfmlab.atomic import write_json
from vfmlab.errors import WeightsError

ENV_VAR = "VFMLAB_WEIGHTS_DIR"
USER_REGISTRY = "user_models.json"
PACKAGE_PREFIX = "package:"
FORMATS = ("pickle", "torchscript")
_REQUIRED = ("name", "architecture", "source", "url", "sha256", "size_bytes", "licence", "expected_keys")
_OPTIONAL = (
    "description", "sha256_note", "format", "state_dict_key", "expected_shapes", "absent_keys",
    "filename", "base",
)


@dataclass(frozen=True)
class ModelEntry:
    """One known set of weights and how to recognise its state dict."""

    name: str
    architecture: str
    source: str  # "url", "package:<pkg>/<path inside pkg>" or "user"
    url: str | None
    sha256: str | None
    size_bytes: int | None
    licence: str
    expected_keys: tuple[str, ...]
    filename: str
    description: str = ""
    sha256_note: str | None = None
    format: str = "pickle"
    state_dict_key: str | None = None
    expected_shapes: tuple[tuple[str, tuple[int, ...]], ...] = ()
    absent_keys: tuple[str, ...] = ()
    base: str | None = None  # for user models: the built-in entry they were fine-tuned from

    @property
    def is_packaged(self) -> bool:
        return self.source.startswith(PACKAGE_PREFIX)

    @property
    def is_user(self) -> bool:
        return self.source == "user"

    @property
    def package_resource(self) -> tuple[str, str]:
        """(distribution package, path inside it) of a package-shipped file."""
        package, _, inner = self.source[len(PACKAGE_PREFIX):].partition("/")
        return package, inner

    @classmethod
    def from_json(cls, data: dict[str, Any], origin: Path | str) -> ModelEntry:
        """Parse one registry record; ``origin`` names the JSON file in error messages."""
        if not isinstance(data, dict):
            raise WeightsError(f"{origin}: a model record is not a JSON object")
        label = data.get("name", "?")
        missing = [k for k in _REQUIRED if k not in data]
        unknown = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL))
        if missing or unknown:
            raise WeightsError(
                f"{origin}: model '{label}' has missing fields {missing} or unknown fields {unknown}"
            )
        fmt = data.get("format", "pickle")
        if fmt not in FORMATS:
            raise WeightsError(f"{origin}: model '{label}' has format {fmt!r}; expected one of {FORMATS}")
        source = data["source"]
        filename = data.get("filename") or _filename_from(source, data["url"])
        if not filename:
            raise WeightsError(f"{origin}: model '{label}' needs a filename, a package path or a url")
        shapes = data.get("expected_shapes") or {}
        return cls(
            name=data["name"],
            architecture=data["architecture"],
            source=source,
            url=data["url"],
            sha256=data["sha256"].lower() if data["sha256"] else None,
            size_bytes=data["size_bytes"],
            licence=data["licence"],
            expected_keys=tuple(data["expected_keys"]),
            filename=filename,
            description=data.get("description", ""),
            sha256_note=data.get("sha256_note"),
            format=fmt,
            state_dict_key=data.get("state_dict_key"),
            expected_shapes=tuple((k, tuple(int(n) for n in v)) for k, v in shapes.items()),
            absent_keys=tuple(data.get("absent_keys") or ()),
            base=data.get("base"),
        )

    def to_json(self) -> dict[str, Any]:
        """The record as stored in a registry file (inverse of :meth:`from_json`)."""
        return {
            "name": self.name,
            "architecture": self.architecture,
            "source": self.source,
            "url": self.url,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "licence": self.licence,
            "expected_keys": list(self.expected_keys),
            "filename": self.filename,
            "description": self.description,
            "sha256_note": self.sha256_note,
            "format": self.format,
            "state_dict_key": self.state_dict_key,
            "expected_shapes": {k: list(v) for k, v in self.expected_shapes},
            "absent_keys": list(self.absent_keys),
            "base": self.base,
        }


def _filename_from(source: str, url: str | None) -> str:
    if source.startswith(PACKAGE_PREFIX):
        return PurePosixPath(source).name
    return PurePosixPath(urlparse(url).path).name if url else ""


def cache_dir() -> Path:
    """Folder holding downloaded and user weights: ``$VFMLAB_WEIGHTS_DIR`` or ``~/.cache/vfmlab/weights``."""
    override = os.environ.get(ENV_VAR)
    return Path(override).expanduser() if override else Path.home() / ".cache" / "vfmlab" / "weights"


@lru_cache(maxsize=1)
def builtin_entries() -> tuple[ModelEntry, ...]:
    """The models that ship with vfmlab (``models.json``)."""
    origin = "vfmlab/weights/models.json"
    text = resources.files("vfmlab.weights").joinpath("models.json").read_text(encoding="utf-8")
    return tuple(ModelEntry.from_json(d, origin) for d in json.loads(text)["models"])


def _user_registry_path() -> Path:
    return cache_dir() / USER_REGISTRY


def user_entries() -> tuple[ModelEntry, ...]:
    """The user's registered fine-tuned models (``user_models.json`` in :func:`cache_dir`)."""
    path = _user_registry_path()
    if not path.is_file():
        return ()
    try:
        records = json.loads(path.read_text(encoding="utf-8"))["models"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise WeightsError(
            f"{path}: the user model registry cannot be read ({exc}); fix or delete the file "
            "(its weight files stay in the folder and can be registered again)"
        ) from exc
    return tuple(ModelEntry.from_json(d, path) for d in records)


def write_user_entries(entries: list[ModelEntry]) -> None:
    """Replace ``user_models.json``; written to a temp file first so a crash cannot truncate it."""
    write_json(_user_registry_path(), {"schema": 1, "models": [e.to_json() for e in entries]})


def list_models() -> list[ModelEntry]:
    """All known models: built-in ones first, then the user's registered models."""
    return [*builtin_entries(), *user_entries()]


def get_entry(name: str) -> ModelEntry:
    """The entry called ``name``; an unknown name raises :class:`WeightsError` listing the known ones."""
    entries = list_models()
    for entry in entries:
        if entry.name == name:
            return entry
    known = ", ".join(e.name for e in entries)
    raise WeightsError(f"unknown model '{name}'; known models: {known}")
