"""Interactive SAM-family segmentation on MRML nodes, with undo (no Qt: tested headless on real MRML).

The widget hands in the volume node, the markups the user placed (positive points, negative points,
an ROI box) and the slice view's axis; results go into a segmentation node as a new segment, or
into the selected segment when the user chose replace / add / subtract. Every write first records
what it changes, so :meth:`SegmentSession.undo` puts the segmentation back exactly.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vfmlab.segment.config import SegmentConfig


@dataclass
class UndoStep:
    """What one write changed: a created segment, or a segment's mask before the write."""

    segmentation_node: object
    segment_id: str
    created: bool
    previous_mask: np.ndarray | None = None
    description: str = ""


@dataclass
class SegmentResult:
    segment_id: str
    slices: tuple[int, int]  # first and last slice index with a mask, along the axis used
    predicted_iou: float | None = None
    stop_reasons: dict[str, str] = field(default_factory=dict)


class SegmentSession:
    """One model and one volume; embeddings stay cached between prompts.

    ``segmenter_factory(name, device)`` builds a :class:`vfmlab.segment.PromptSegmenter`; tests and
    the widget inject it (the widget through a background-safe cache of built models).
    """

    def __init__(self, volume_node, model_name: str = SegmentConfig.model, device: str | None = None,
                 segmenter_factory=None, max_undo: int = 20):
        from vfmlab import mrml
        from vfmlab.segment.registry import build_segmenter
        from vfmlab.segment.volume_segmenter import VolumeSegmenter

        factory = segmenter_factory or (lambda name, dev: build_segmenter(name, device=dev))
        self.volume_node = volume_node
        self.volume = mrml.volume_from_node(volume_node)
        self.segmenter = VolumeSegmenter(factory(model_name, device), self.volume)
        self.model_name = model_name
        self.max_undo = max_undo
        self._undo: list[UndoStep] = []

    # -- prompts -------------------------------------------------------------------------------
    def prompt_from_markups(self, axis: str, positive_node=None, negative_node=None, roi_node=None,
                            slice_index: int | None = None):
        from vfmlab.mrml.markups import control_points_world, roi_corners_world, slice_prompt

        return slice_prompt(
            self.volume, axis,
            control_points_world(positive_node) if positive_node is not None else None,
            control_points_world(negative_node) if negative_node is not None else None,
            roi_corners_world(roi_node) if roi_node is not None else None,
            slice_index,
        )

    # -- segmentation ----------------------------------------------------------------------------
    def compute(self, slice_prompt, propagate: bool = False, propagation_config=None, on_slice=None,
                should_stop=lambda: False) -> tuple[np.ndarray, SegmentResult]:
        """The ``(K, J, I)`` mask for a prompt (propagated when asked). Pure computation: safe on a worker
        thread, while the MRML scene is only touched by :meth:`write` on the main thread."""
        from vfmlab.segment.propagate import PropagationConfig, segment_prompt
        from vfmlab.segment.segmenter import Prompt

        prompt = Prompt(slice_prompt.box, slice_prompt.points, slice_prompt.point_labels)
        config = (propagation_config or PropagationConfig()) if propagate else None
        result = segment_prompt(self.segmenter, slice_prompt.axis, slice_prompt.index, prompt, config, on_slice,
                                should_stop)
        return result.mask, SegmentResult("", result.slices, result.predicted_iou, result.stop_reasons)

    def segment(self, slice_prompt, segmentation_node, name: str, mode: str = "new",
                segment_id: str | None = None, propagate: bool = False, propagation_config=None,
                on_slice=None, should_stop=lambda: False) -> SegmentResult:
        """Segment the prompt's slice (and, with ``propagate``, the neighbouring slices) into the segmentation."""
        mask, result = self.compute(slice_prompt, propagate, propagation_config, on_slice, should_stop)
        result.segment_id = self.write(segmentation_node, mask, name, mode, segment_id)
        return result

    def slice_index_at(self, axis: str, ras_point) -> int:
        """Index of the ``axis`` slice through a RAS point (e.g. a slice view's centre)."""
        return int(self.segmenter.stack(axis).ras_to_slice(self.volume, np.asarray(ras_point, float))[0, 0])

    def write(self, segmentation_node, mask: np.ndarray, name: str, mode: str = "new",
              segment_id: str | None = None) -> str:
        """Write a ``(K, J, I)`` mask with :func:`vfmlab.mrml.add_segment`, remembering how to undo it."""
        from vfmlab import mrml

        previous = None
        if mode != "new" and segment_id is not None and segmentation_node.GetSegmentation().GetSegment(segment_id):
            previous = mrml.segment_mask(segmentation_node, segment_id, self.volume_node)
        written = mrml.add_segment(segmentation_node, self.volume.with_array(mask), self.volume_node, name, mode=mode,
                                   segment_id=segment_id)
        self._undo.append(UndoStep(segmentation_node, written, mode == "new", previous, f"{mode} {name}"))
        del self._undo[: -self.max_undo]
        return written

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    def undo(self) -> str:
        """Revert the last write; returns its description."""
        from vfmlab import mrml

        if not self._undo:
            return ""
        step = self._undo.pop()
        segmentation = step.segmentation_node.GetSegmentation()
        if step.created:
            segmentation.RemoveSegment(step.segment_id)
        elif segmentation.GetSegment(step.segment_id) is not None:
            mrml.add_segment(step.segmentation_node, step.previous_mask, self.volume_node, "",
                             mode="replace", segment_id=step.segment_id)
        return step.description


def model_status() -> list[tuple[str, bool, str]]:
    """(model name, weights available offline, path or message) for every prompt segmenter, user models included."""
    from vfmlab.models.listing import model_rows

    return [(row["name"], row["status"] != "missing", row.get("path") or row.get("message", ""))
            for row in model_rows("segmenter")]


def metrics_rows(volume_node, segmentation_node, segment_ids: list[str], reference_node, reference_ids: list[str]):
    """Metrics of each segment against the reference segment paired with it, on the volume's grid."""
    from vfmlab import mrml
    from vfmlab.metrics import segment_metrics

    spacing = mrml.volume_from_node(volume_node).spacing[::-1]
    names = mrml.segment_names(segmentation_node)
    rows = []
    for segment_id, reference_id in zip(segment_ids, reference_ids):
        prediction = mrml.segment_mask(segmentation_node, segment_id, volume_node)
        reference = mrml.segment_mask(reference_node, reference_id, volume_node)
        rows.append({"segment": names[segment_id], **segment_metrics(prediction, reference, spacing)})
    return rows


def panel_finetune_config(epochs: int, train_decoder: bool) -> dict:
    """The panel's fine-tuning settings: mini-batches of 4 with a cosine decay, and the learning rate that
    worked for each choice in ``bench/segment_bench.py`` (the whole decoder needs a smaller one)."""
    return {"epochs": epochs, "train_decoder": train_decoder, "batch_size": 4, "cosine_schedule": True,
            "learning_rate": 3e-4 if train_decoder else 3e-3}


def finetune_job_params(volume_node, segmentation_node, segment_ids: list[str], run_dir, config: dict,
                        register_as: str | None = None) -> dict:
    """Write the volume and the chosen segments as files in ``run_dir`` and return the
    ``segment-finetune`` job's parameters (the job runs in its own process, away from the scene)."""
    from pathlib import Path

    from vfmlab import mrml
    from vfmlab.volume_io import write_volume

    run_dir = Path(run_dir)
    volume = mrml.volume_from_node(volume_node)
    labels, names = mrml.labels_from_segmentation(segmentation_node, volume_node, segment_ids)
    volume_file = write_volume(volume, run_dir / "volume.nrrd")
    labels_file = write_volume(volume.with_array(labels.astype(np.int16)), run_dir / "labels.nrrd")
    segments = {name: value for value, name in names.items()}
    return {"volume": str(volume_file), "labels": str(labels_file), "run_dir": str(run_dir / "training"),
            "config": {**config, "segments": segments}, "register_as": register_as}
