"""Long model work inside the server process (propagation, encoding ahead), with progress and cancel.

The server is its own process, so a Python thread here runs freely (unlike one inside Slicer, whose
embedded Python holds the GIL while Qt idles). Each operation takes the model's lock one slice at a
time, so a prompt sent meanwhile is answered between two slices.
"""
from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..errors import VfmlabError

log = logging.getLogger("vfmlab.server")
OperationState = Literal["running", "finished", "failed", "cancelled"]
KEEP_ENDED = 32  # ended operations kept for their results


@dataclass
class Operation:
    kind: str
    total: int  # slices at most (progress denominator)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    state: OperationState = "running"
    done: int = 0
    message: str = ""
    error: str | None = None
    mask: np.ndarray | None = None  # a propagation's (K, J, I) result
    result: dict[str, Any] = field(default_factory=dict)
    cancel_event: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def status(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "state": self.state, "done": self.done, "total": self.total,
                "message": self.message, "error": self.error, "result": self.result,
                "has_mask": self.mask is not None}

    def should_stop(self) -> bool:
        return self.cancel_event.is_set()


class Operations:
    """Operations by id; ended ones are kept (up to :data:`KEEP_ENDED`) so their results can be fetched."""

    def __init__(self):
        self._operations: OrderedDict[str, Operation] = OrderedDict()
        self._lock = threading.Lock()

    def start(self, operation: Operation, work: Callable[[Operation], None]) -> Operation:
        def run():
            try:
                work(operation)
                operation.state = "cancelled" if operation.should_stop() else "finished"
            except VfmlabError as error:
                operation.state, operation.error = "failed", str(error)
            except Exception as error:  # noqa: BLE001 - reported to the client as one line, logged in full
                log.exception("operation %s (%s) failed", operation.id, operation.kind)
                operation.state, operation.error = "failed", f"internal error ({type(error).__name__}); see the server log"

        with self._lock:
            self._operations[operation.id] = operation
            ended = [key for key, op in self._operations.items() if op.state != "running"]
            for key in ended[:-KEEP_ENDED]:
                del self._operations[key]
        operation.thread = threading.Thread(target=run, name=f"vfmlab-{operation.kind}-{operation.id[:8]}",
                                            daemon=True)
        operation.thread.start()
        return operation

    def get(self, operation_id: str) -> Operation | None:
        with self._lock:
            return self._operations.get(operation_id)

    def shutdown(self, timeout: float = 10.0) -> None:
        """Cancel every running operation and wait for its thread (each stops within one slice)."""
        with self._lock:
            running = [op for op in self._operations.values() if op.state == "running"]
        for operation in running:
            operation.cancel_event.set()
        for operation in running:
            if operation.thread is not None:
                operation.thread.join(timeout)


def propagation_work(bound, axis: str, prompts: dict, config) -> Callable[[Operation], None]:
    """The work of a propagation: the prompted slices ``{index: Prompt}``, then from them up and down until
    a stop rule fires or a cancel."""
    from ..segment.seeds import segment_prompts

    def work(operation: Operation) -> None:
        def on_slice(record) -> None:
            operation.done += 1
            operation.message = f"slice {record.index}"

        result = segment_prompts(_Locked(bound), axis, prompts, config, on_slice, operation.should_stop)
        operation.mask = result.mask
        operation.result = {"axis": axis, "slices": list(result.slices), "stop_reasons": result.stop_reasons}

    return work


def encoding_work(bound, axis: str, indices: list[int]) -> Callable[[Operation], None]:
    """The work of encoding slices ahead, one at a time under the model's lock."""
    def work(operation: Operation) -> None:
        for index in indices:
            if operation.should_stop():
                return
            with bound.lock:
                bound.volume_segmenter.encode_ahead(axis, [index])
            operation.done += 1
        operation.result = {"encoded": operation.done}

    return work


class _Locked:
    """A VolumeSegmenter whose model calls take the model's lock (one slice at a time)."""

    def __init__(self, bound):
        self._bound = bound

    def __getattr__(self, name: str):
        return getattr(self._bound.volume_segmenter, name)

    def segment_slice(self, axis, index, prompt):
        with self._bound.lock:
            return self._bound.volume_segmenter.segment_slice(axis, index, prompt)
