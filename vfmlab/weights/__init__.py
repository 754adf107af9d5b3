"""Model weights: the registry of known checkpoints, finding/downloading/verifying files, safe loading.

``import vfmlab.weights`` does not import torch; only loading a checkpoint does.
"""
from vfmlab.weights.checkpoint import load_state_dict, read_checkpoint, register_user_model
from vfmlab.weights.files import resolve, sha256_of
from vfmlab.weights.registry import ENV_VAR, ModelEntry, cache_dir, get_entry, list_models

__all__ = [
    "ENV_VAR",
    "ModelEntry",
    "cache_dir",
    "get_entry",
    "list_models",
    "load_state_dict",
    "read_checkpoint",
    "register_user_model",
    "resolve",
    "sha256_of",
]
