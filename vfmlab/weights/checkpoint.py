"""Loading checkpoints without running their code, and checking they fit the expected architecture."""
from __future__ import annotations

import pickle
import re
import shutil
import warnings
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vfmlab.atomic import atomic_path
from vfmlab.errors import WeightsError
from vfmlab.weights import registry
from vfmlab.weights.files import Progress, resolve, sha256_of
from vfmlab.weights.registry import ModelEntry, cache_dir, get_entry

if TYPE_CHECKING:
    import torch

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# Wrappers that training scripts commonly put around the weights ({"model": ..., "epoch": ...}).
_COMMON_WRAPPERS = ("state_dict", "model")


def load_state_dict(
    name: str,
    local_file: str | Path | None = None,
    allow_download: bool = False,
    *,
    verify: bool = False,
    progress: Progress | None = None,
) -> dict[str, torch.Tensor]:
    """Resolve the weights of ``name`` (see :func:`resolve`) and return their state dict on the CPU."""
    entry = get_entry(name)
    path = resolve(name, local_file, allow_download, verify=verify, progress=progress)
    return read_checkpoint(entry, path)


def read_checkpoint(entry: ModelEntry, path: str | Path) -> dict[str, torch.Tensor]:
    """Load ``path`` with ``weights_only=True``, unwrap it and check its keys against ``entry``."""
    path = Path(path)
    state = _unwrap(_torch_load(entry, path), entry, path)
    reason = _mismatch(state, entry)
    if reason is not None:
        raise WeightsError(
            f"{path}: this checkpoint is not a {entry.architecture} checkpoint: {reason}; "
            f"it looks like {_describe(state, entry)}."
        )
    return state


def _torch_load(entry: ModelEntry, path: Path) -> Any:
    import torch

    try:
        with warnings.catch_warnings():
            # torch warns before refusing a TorchScript archive; that refusal is handled below.
            warnings.filterwarnings("ignore", message=".*TorchScript archive.*")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found is None:
            raise _corrupt(entry, path, exc) from exc
        raise WeightsError(
            f"{path} holds Python objects besides tensors ({found.group(1)}); vfmlab loads weights "
            "with weights_only=True so that a checkpoint cannot run code. Save only the tensors, "
            "e.g. torch.save(checkpoint['model'], 'weights.pth'), and use that file."
        ) from exc
    except RuntimeError as exc:
        if "TorchScript" not in str(exc):
            raise _corrupt(entry, path, exc) from exc
        if entry.format != "torchscript":
            raise WeightsError(
                f"{path} is a TorchScript archive, not a {entry.architecture} state dict checkpoint"
            ) from exc
        return _load_torchscript(entry, path)
    except OSError as exc:
        raise WeightsError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except Exception as exc:  # torch has no single "bad file" error: EOFError, ValueError, zip errors...
        raise _corrupt(entry, path, exc) from exc


def _load_torchscript(entry: ModelEntry, path: Path) -> dict[str, torch.Tensor]:
    import torch

    try:
        with warnings.catch_warnings():
            # torch.jit.load is deprecated, but OpenAI distributes CLIP only as TorchScript.
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise _corrupt(entry, path, exc) from exc
    return dict(module.state_dict())


def _corrupt(entry: ModelEntry, path: Path, exc: BaseException) -> WeightsError:
    detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    where = f" from {entry.url}" if entry.url else ""
    return WeightsError(
        f"{path} is corrupt or truncated, or not a PyTorch checkpoint ({type(exc).__name__}: {detail}). "
        f"Delete it and download it again{where}."
    )


def _unwrap(obj: Any, entry: ModelEntry, path: Path) -> dict[str, torch.Tensor]:
    import torch

    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path} holds a {type(obj).__name__}, not a state dict of tensors")
    if entry.state_dict_key and isinstance(obj.get(entry.state_dict_key), Mapping):
        obj = obj[entry.state_dict_key]
    elif not any(key in obj for key in entry.expected_keys):
        for key in _COMMON_WRAPPERS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _few(keys: list[str]) -> str:
    return ", ".join(keys[:4]) + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")


def _mismatch(state: Mapping[str, Any], entry: ModelEntry) -> str | None:
    """Why ``state`` is not a checkpoint of ``entry``'s architecture, or None when it fits."""
    wanted = [*entry.expected_keys, *(k for k, _ in entry.expected_shapes if k not in entry.expected_keys)]
    missing = [k for k in wanted if k not in state]
    if missing:
        return f"missing keys {_few(missing)}"
    foreign = [k for k in entry.absent_keys if k in state]
    if foreign:
        return f"it has keys that {entry.architecture} does not have: {_few(foreign)}"
    for key, shape in entry.expected_shapes:
        actual = tuple(state[key].shape)
        if actual != shape:
            return f"{key} has shape {list(actual)}, expected {list(shape)} (another model size?)"
    return None


def _describe(state: Mapping[str, Any], expected: ModelEntry) -> str:
    # Built-ins only: this runs while reporting an error, so a broken user registry must not mask it.
    for candidate in registry.builtin_entries():
        if candidate.architecture != expected.architecture and _mismatch(state, candidate) is None:
            return f"a {candidate.architecture} checkpoint (model '{candidate.name}')"
    if not state:
        return "an empty state dict"
    return "no model vfmlab knows; its first keys are " + _few(list(state))


def _template(architecture: str, base: str | None) -> ModelEntry:
    if base is not None:
        template = get_entry(base)
        if template.architecture != architecture:
            raise WeightsError(f"base model '{base}' is a {template.architecture}, not a {architecture}")
        return template
    for entry in registry.builtin_entries():
        if entry.architecture == architecture:
            return entry
    known = ", ".join(sorted({e.architecture for e in registry.builtin_entries()}))
    raise WeightsError(f"unknown architecture '{architecture}'; known architectures: {known}")


def register_user_model(
    name: str, path: str | Path, architecture: str, base: str | None = None
) -> ModelEntry:
    """Copy a fine-tuned checkpoint into :func:`cache_dir` and add it to ``user_models.json``.

    The file must load as a state dict of ``architecture`` (checked before anything is copied);
    registering an existing user name again replaces it.
    """
    builtins = registry.builtin_entries()
    if not _NAME.fullmatch(name):
        raise WeightsError(f"model name '{name}' may only use letters, digits, '_', '.' and '-'")
    if name in {e.name for e in builtins}:
        raise WeightsError(f"'{name}' is a built-in model; choose another name for your model")
    source = Path(path).expanduser()
    if not source.is_file():
        raise WeightsError(f"{source}: weights file for user model '{name}' not found")
    template = _template(architecture, base)
    folder = cache_dir()
    dest = folder / f"{name}{source.suffix or '.pth'}"
    if dest.name in {e.filename for e in builtins}:
        raise WeightsError(f"'{name}' would overwrite the built-in weights file {dest.name}; choose another name")

    draft = replace(
        template, name=name, source="user", url=None, sha256=None, size_bytes=None, filename=dest.name,
        description=f"{name}: fine-tuned from '{template.name}'", sha256_note=None, base=template.name,
    )
    read_checkpoint(draft, source)
    folder.mkdir(parents=True, exist_ok=True)
    if source.resolve() != dest.resolve():
        with atomic_path(dest) as temp:
            shutil.copyfile(source, temp)
    entry = replace(draft, sha256=sha256_of(dest), size_bytes=dest.stat().st_size)

    others = []
    for existing in registry.user_entries():
        if existing.name != name:
            others.append(existing)
        elif existing.filename != dest.name:
            (folder / existing.filename).unlink(missing_ok=True)
    registry.write_user_entries([*others, entry])
    return entry


