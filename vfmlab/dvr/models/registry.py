"""DeepDVR models by name (paper Table 1): the catalogue's ``dvr`` entries (:mod:`vfmlab.models`), with
typed configs: paper-sized defaults, and a small size for CPU training.

Model modules are imported when a model is built: the VNet-based ones pull in monai, which a lookup
TF run (and the command line) should not wait for.
"""
from __future__ import annotations

from dataclasses import asdict, fields

from ...errors import InputError
from ...models import catalogue
from .base import DVRModel

SIZES = ("paper", "small")


def model_names() -> list[str]:
    return list(catalogue.names("dvr"))


def _role(name: str) -> catalogue.Role:
    return catalogue.get(name, "dvr").role("dvr")


def model_config(name: str, size: str = "paper", **overrides):
    """The config of model ``name`` at ``size`` ("paper" or "small"), with ``overrides`` applied."""
    role = _role(name)
    if size not in SIZES:
        raise InputError(f"unknown model size {size!r}; choose one of {', '.join(SIZES)}")
    config_type = catalogue.load(role.config)
    values = dict(role.options["small"]) if size == "small" else {}
    known = {f.name for f in fields(config_type)}
    unknown = set(overrides) - known
    if unknown:
        raise InputError(f"model {name!r} has no setting(s) {sorted(unknown)}; its settings: {sorted(known)}")
    return config_type(**{**values, **overrides})


def build_model(name: str, config=None) -> DVRModel:
    """Build model ``name`` from a config (dataclass or dict; default: paper size)."""
    role = _role(name)
    if config is None or isinstance(config, dict):
        config = model_config(name, **(config or {}))
    return catalogue.load(role.options["model_class"])(config, **role.options["builder_options"])


def config_dict(config) -> dict:
    return asdict(config)
