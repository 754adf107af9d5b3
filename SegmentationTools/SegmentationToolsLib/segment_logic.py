"""Interactive SAM-family segmentation on MRML nodes, with undo (no Qt: tested headless on real MRML).

The model runs in the model server (:mod:`vfmlab.client`), never in Slicer's process: the session sends
the volume once (named by its sha256), sends prompts, and starts propagations and encode-ahead that the
panel follows by polling. The widget hands in the volume node, the markups the user placed (positive
points, negative points, an ROI box) and the slice view's axis; results go into a segmentation node as
a new segment, or into the selected segment when the user chose replace / add / subtract. Every write
first records what it changes, so :meth:`SegmentSession.undo` puts the segmentation back exactly.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from vfmlab.client import ModelClient, ServerError
from vfmlab.segment.config import SegmentConfig

ENDED = ("finished", "failed", "cancelled")


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


def prompt_from_markups(volume, axis: str, positive_node=None, negative_node=None, roi_node=None,
                        slice_index: int | None = None):
    """The markups' prompt on an ``axis`` slice of ``volume`` (its geometry is enough: no voxels are read)."""
    from vfmlab.mrml.markups import control_points_world, roi_corners_world, slice_prompt

    return slice_prompt(
        volume, axis,
        control_points_world(positive_node) if positive_node is not None else None,
        control_points_world(negative_node) if negative_node is not None else None,
        roi_corners_world(roi_node) if roi_node is not None else None,
        slice_index,
    )


def slice_index_at(volume, axis: str, ras_point) -> int:
    """Index of the ``axis`` slice of ``volume`` through a RAS point (a slice view's centre, which may be
    panned aside); a point beyond the volume's ends is refused."""
    from vfmlab.slices import SliceStack

    stack = SliceStack.of(volume, axis)
    index = stack.slice_through(volume, ras_point)
    if not 0 <= index < stack.shape[0]:
        raise ValueError(f"the view shows a plane beyond the volume ({axis} slice {index} of 0..{stack.shape[0] - 1}); "
                         "scroll onto the volume")
    return index


class SeedPrompts:
    """Prompts kept on several slices of one axis for one segment (e.g. at its key slices) until propagated.

    A second prompt on a slice replaces the first; a prompt on another axis is refused (one propagation
    walks one axis). :meth:`with_current` joins the prompt placed but not added.
    """

    def __init__(self):
        self.prompts: dict[int, object] = {}  # slice index -> vfmlab.mrml.markups.SlicePrompt

    @property
    def axis(self) -> str | None:
        return next(iter(self.prompts.values())).axis if self.prompts else None

    def add(self, slice_prompt) -> None:
        if self.axis not in (None, slice_prompt.axis):
            raise ValueError(f"the seeds so far are on {self.axis} slices; prompt in a view showing {self.axis} "
                             f"slices, or clear the seeds to start on {slice_prompt.axis} ones")
        self.prompts[slice_prompt.index] = slice_prompt

    def clear(self) -> None:
        self.prompts.clear()

    def describe(self) -> str:
        if not self.prompts:
            return "No seeds."
        count = len(self.prompts)
        slices = ", ".join(map(str, sorted(self.prompts)))
        return f"{count} seed{'s' if count > 1 else ''} on {self.axis} slices {slices}."

    def with_current(self, slice_prompt=None) -> tuple[object, list]:
        """``(first prompt, further seeds)`` for :meth:`SegmentSession.start_propagation`: the seeds and the
        prompt placed now (which replaces a seed on its slice)."""
        prompts = dict(self.prompts)
        if slice_prompt is not None:
            if self.axis not in (None, slice_prompt.axis):
                raise ValueError(f"the prompt is on a {slice_prompt.axis} slice but the seeds on {self.axis} ones; "
                                 "prompt in the seeds' view, or clear the seeds")
            prompts[slice_prompt.index] = slice_prompt
        if not prompts:
            raise ValueError("place a box or points on a slice first (or add seeds)")
        first, *more = (prompts[index] for index in sorted(prompts))
        return first, more


class SegmentSession:
    """One model and one volume on the server, whose embeddings stay cached there between prompts."""

    def __init__(self, volume_node, client: ModelClient, model_name: str = SegmentConfig.model, max_undo: int = 20):
        from vfmlab import mrml

        self.volume_node = volume_node
        self.volume = mrml.volume_from_node(volume_node)
        self.client = client
        self.model_name = model_name
        self.max_undo = max_undo
        self._undo: list[UndoStep] = []
        self.volume_sha256 = client.send_volume(self.volume.array, self.volume.ijk_to_ras)

    def _on_server(self, call: Callable[[], object]):
        """Run a request naming the volume; a server that lost it (restarted, or dropped it for newer ones)
        answers 404, so the volume is sent again and the request repeated once."""
        try:
            return call()
        except ServerError as error:
            if error.status != 404:
                raise
            self.volume_sha256 = self.client.send_volume(self.volume.array, self.volume.ijk_to_ras)
            return call()

    # -- prompts -------------------------------------------------------------------------------
    def prompt_from_markups(self, axis: str, positive_node=None, negative_node=None, roi_node=None,
                            slice_index: int | None = None):
        return prompt_from_markups(self.volume, axis, positive_node, negative_node, roi_node, slice_index)

    # -- segmentation ----------------------------------------------------------------------------
    def _prompt_args(self, slice_prompt) -> tuple:
        return (self.model_name, self.volume_sha256, slice_prompt.axis, slice_prompt.index, slice_prompt.box,
                slice_prompt.points if slice_prompt.points is not None else (),
                slice_prompt.point_labels if slice_prompt.point_labels is not None else ())

    def segment_slice(self, slice_prompt) -> tuple[np.ndarray, SegmentResult]:
        """The ``(K, J, I)`` mask of the prompt's slice alone (one short request)."""
        from vfmlab.slices import SliceStack

        answer = self._on_server(lambda: self.client.segment(*self._prompt_args(slice_prompt)))
        mask = SliceStack.of(self.volume, slice_prompt.axis).volume_mask(self.volume.array.shape, slice_prompt.index,
                                                                         answer.mask)
        return mask, SegmentResult("", (slice_prompt.index, slice_prompt.index), answer.iou)

    def start_propagation(self, slice_prompt, rules: Optional[dict] = None, seeds: Sequence = ()) -> str:
        """Start propagating from the prompt's slice, and from ``seeds`` (prompts on other slices of the same
        axis: one segment prompted at several slices, e.g. its key slices); returns the operation id to poll."""
        args = self._prompt_args(slice_prompt)
        more = [self._prompt_args(seed)[3:] for seed in seeds]
        return self._on_server(lambda: self.client.start_propagation(*args, rules=rules or {}, seeds=more))["id"]

    def propagation_result(self, operation_id: str) -> tuple[np.ndarray, SegmentResult]:
        """The finished propagation's ``(K, J, I)`` mask."""
        answer = self.client.propagation_mask(operation_id)
        return answer.mask, SegmentResult("", answer.slices, None, answer.stop_reasons)

    def encode_ahead(self, axis: str, indices: list[int]) -> str:
        """Encode slices on the server while the user looks, so the next prompt there answers at once."""
        from vfmlab.slices import SliceStack

        count = SliceStack.of(self.volume, axis).shape[0]
        wanted = [i for i in indices if 0 <= i < count]
        return self._on_server(lambda: self.client.start_encoding(self.model_name, self.volume_sha256, axis,
                                                                  wanted))["id"]

    def compute(self, slice_prompt, propagate: bool = False, rules: Optional[dict] = None,
                on_status: Optional[Callable[[dict], None]] = None,
                seeds: Sequence = ()) -> tuple[np.ndarray, SegmentResult]:
        """Blocking :meth:`segment_slice` or propagation, for scripts and self-tests (panels poll instead)."""
        if not propagate:
            return self.segment_slice(slice_prompt)
        operation_id = self.start_propagation(slice_prompt, rules, seeds)
        ended = self.client.wait_operation(operation_id, on_status)
        if ended["state"] != "finished":
            raise ServerError(f"propagation {ended['state']}: {ended['error'] or 'stopped'}")
        return self.propagation_result(operation_id)

    def segment(self, slice_prompt, segmentation_node, name: str, mode: str = "new",
                segment_id: str | None = None, propagate: bool = False, rules: Optional[dict] = None,
                seeds: Sequence = ()) -> SegmentResult:
        """Segment the prompt's slice (and, with ``propagate``, the neighbouring slices, from ``seeds`` too)
        into the segmentation."""
        mask, result = self.compute(slice_prompt, propagate, rules, seeds=seeds)
        result.segment_id = self.write(segmentation_node, mask, name, mode, segment_id)
        return result

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


def model_status(client: ModelClient) -> list[tuple[str, bool, str]]:
    """(model name, weights available, path or message) for every prompt segmenter the server offers,
    the user's fine-tuned models included."""
    rows = [row for row in client.models()["models"] if "segmenter" in row.get("families", ())]
    return [(row["name"], row["status"] != "missing", row.get("path") or row.get("message", "")) for row in rows]


def metrics_rows(client: ModelClient, volume_node, segmentation_node, segment_ids: list[str], reference_node,
                 reference_ids: list[str]) -> list[dict]:
    """Metrics of each segment against the reference segment paired with it, on the volume's grid
    (computed by the server: HD95 needs monai)."""
    from vfmlab import mrml

    ijk_to_ras = mrml.volume_geometry(volume_node).ijk_to_ras
    names = mrml.segment_names(segmentation_node)
    rows = []
    for segment_id, reference_id in zip(segment_ids, reference_ids):
        prediction = mrml.segment_mask(segmentation_node, segment_id, volume_node)
        reference = mrml.segment_mask(reference_node, reference_id, volume_node)
        rows.append({"segment": names[segment_id], **client.metrics(prediction, reference, ijk_to_ras)})
    return rows
