"""DeepDVR models of the paper's Table 1, built by name: ``build_model("vnetl16-17", config)``."""
from .base import DVRModel, RenderOptions, VolumeInput
from .registry import SIZES, build_model, config_dict, model_config, model_names

__all__ = ["DVRModel", "RenderOptions", "SIZES", "VolumeInput", "build_model", "config_dict",
           "model_config", "model_names"]
