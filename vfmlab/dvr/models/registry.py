"""Models by name (paper Table 1), with typed configs: paper-sized defaults, a small CPU size.

Model modules are imported when a model is built: the VNet-based ones pull in monai, which a lookup
TF run (and the command line) should not wait for.
"""
from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, fields

from ...errors import InputError
from .base import DVRModel


@dataclass(frozen=True)
class ModelSpec:
    module: str  # within vfmlab.dvr.models
    config_type: str
    builder: str  # a class taking the config (or a function of it)
    small: dict  # overrides of the paper-sized defaults for CPU training
    summary: str
    builder_options: tuple = ()  # extra keyword arguments for the builder

    def load(self, name: str):
        return getattr(importlib.import_module(f"{__package__}.{self.module}"), name)


MODELS: dict[str, ModelSpec] = {
    "lookup": ModelSpec("tf_models", "LookupConfig", "LookupModel", {},
                        "256-entry RGB + opacity lookup TF (exports to Slicer)"),
    "mlp": ModelSpec("tf_models", "MLPConfig", "MLPTFModel", {}, "MLP transfer function of the scalar"),
    "vnet4-4": ModelSpec("vnet_models", "VNetConfig", "VNet44", {"base_width": 4, "depth": 2},
                         "VNet encoder -> RGB-kappa volume"),
    "vnetl16-4": ModelSpec("vnet_models", "VNetLightConfig", "VNetL16",
                           {"base_width": 4, "depth": 2, "semantic_channels": 8, "hidden": 8},
                           "VNetLight -> 16 semantic channels, MLP colour and opacity TFs",
                           (("latent_color", False),)),
    "vnetl16-17": ModelSpec("vnet_models", "VNetLightConfig", "VNetL16",
                            {"base_width": 4, "depth": 2, "semantic_channels": 8, "hidden": 8},
                            "VNetLight -> 16 latent colour channels, MLP opacity TF and image decoder",
                            (("latent_color", True),)),
    "dvrnet": ModelSpec("dvrnet", "DVRNetConfig", "DVRNet", {"base_width": 4, "depth": 2, "hidden": 8},
                        "multiscale: 3D encoder levels -> DVR units -> 2D U-Net decoder"),
}
SIZES = ("paper", "small")


def model_names() -> list[str]:
    return list(MODELS)


def _spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise InputError(f"unknown DeepDVR model {name!r}; choose one of {', '.join(MODELS)}") from None


def model_config(name: str, size: str = "paper", **overrides):
    """The config of model ``name`` at ``size`` ("paper" or "small"), with ``overrides`` applied."""
    spec = _spec(name)
    if size not in SIZES:
        raise InputError(f"unknown model size {size!r}; choose one of {', '.join(SIZES)}")
    config_type = spec.load(spec.config_type)
    values = dict(spec.small) if size == "small" else {}
    known = {f.name for f in fields(config_type)}
    unknown = set(overrides) - known
    if unknown:
        raise InputError(f"model {name!r} has no setting(s) {sorted(unknown)}; its settings: {sorted(known)}")
    return config_type(**{**values, **overrides})


def build_model(name: str, config=None) -> DVRModel:
    """Build model ``name`` from a config (dataclass or dict; default: paper size)."""
    spec = _spec(name)
    if config is None or isinstance(config, dict):
        config = model_config(name, **(config or {}))
    return spec.load(spec.builder)(config, **dict(spec.builder_options))


def config_dict(config) -> dict:
    return asdict(config)
