"""Scoring a saved segmentation against a reference label map, on the reference's grid."""
from __future__ import annotations

from pathlib import Path

from ..errors import InputError


def evaluate_segmentation(segmentation_path: Path, reference_path: Path, labels: dict[str, int]) -> list[dict]:
    """Metrics per named segment of a ``.seg.nrrd`` against values of a reference label map."""
    from .. import mrml
    from ..metrics import metrics_table

    scene = mrml.new_scene()
    reference_node = mrml.load_volume_node(scene, reference_path, labelmap=True)
    reference = mrml.volume_from_node(reference_node)
    segmentation = mrml.load_segmentation_node(scene, segmentation_path)
    ids = {name: sid for sid, name in mrml.segment_names(segmentation).items()}
    unknown = [name for name in labels if name not in ids]
    if unknown:
        raise InputError(f"no segment named {unknown}; segments are {sorted(ids)}", segmentation_path)
    predictions = {name: mrml.segment_mask(segmentation, ids[name], reference_node) for name in labels}
    references = {name: reference.array == value for name, value in labels.items()}
    return metrics_table(predictions, references, spacing=reference.spacing[::-1])
