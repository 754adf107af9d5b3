"""Background-job task ``keyslices`` (the panel's "Find key slices", on the model server).

Params: ``volume`` (file), ``out`` (folder), ``config`` (:class:`~.config.KeySliceConfig` fields; weights
left out take their defaults), optional ``labels`` (label map on the volume's grid), ``threads``.
Returns the chosen indices, the number of slices and the coverage; the files are ``vfmlab slices``'.
"""
from __future__ import annotations

from dataclasses import fields
from typing import Any

from ..errors import InputError
from ..jobs import Reporter, register_task
from .config import KeySliceConfig

TASK = "keyslices"
TASK_MODULE = __name__


def config_from(params: dict[str, Any]) -> KeySliceConfig:
    known = {field.name for field in fields(KeySliceConfig)} - {"weights"}
    unknown = set(params) - known
    if unknown:
        raise InputError(f"unknown key-slice settings: {', '.join(sorted(unknown))}")
    return KeySliceConfig(**params)


@register_task(TASK)
def keyslices_task(params: dict[str, Any], reporter: Reporter) -> dict[str, Any]:
    import torch

    from ..probes.registry import build_probe
    from ..volume_io import read_labels, read_volume
    from .run import STRIP_PNG, key_slices, write_outputs

    if params.get("threads"):
        torch.set_num_threads(int(params["threads"]))
    config = config_from(params.get("config") or {})
    volume = read_volume(params["volume"])
    labels = read_labels(params["labels"], volume) if params.get("labels") else None
    probe = build_probe(config.model)
    result = key_slices(volume, config, probe, labels,
                        progress=lambda done, total: reporter.progress(done / total, f"scored slice {done} of {total}"))
    files = write_outputs(params["out"], result, config, volume, source=str(params["volume"]))
    reporter.artifact("strip", str(files[STRIP_PNG]))
    return {"out": params["out"], "indices": result.selection.indices, "slices": result.selection.slices,
            "axis": config.axis, "coverage": result.selection.coverage}
