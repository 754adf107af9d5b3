"""What the model server holds between requests: volumes by sha256, built models, embedding caches."""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..client.wire import decode_volume
from ..errors import InputError
from ..volume import Volume
from ..volume_io import check_finite

SegmenterFactory = Callable[[str], object]  # model name -> vfmlab.segment.PromptSegmenter


class UnknownVolume(InputError):
    """The server does not hold this volume (never sent, or dropped to make room): send it again."""


class VolumeStore:
    """Volumes sent by clients, named by the sha256 of their payload; the least recently used are dropped."""

    def __init__(self, capacity: int, folder: Path):
        self.capacity = capacity
        self.folder = folder
        self._volumes: OrderedDict[str, Volume] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, sha256: str) -> bool:
        with self._lock:
            return sha256 in self._volumes

    def add(self, sha256: str, payload: bytes) -> Volume:
        """Check and keep a payload of :func:`vfmlab.client.wire.encode_volume`."""
        array, ijk_to_ras = decode_volume(payload)
        volume = Volume.from_ijk_to_ras(array, ijk_to_ras, name=sha256[:12])  # refuses what is not 3D
        if array.size == 0:
            raise InputError(f"the volume of shape {list(array.shape)} has no voxels")
        check_finite(array, "the volume")
        with self._lock:
            self._volumes[sha256] = volume
            self._volumes.move_to_end(sha256)
            while len(self._volumes) > self.capacity:
                self._volumes.popitem(last=False)
        return volume

    def get(self, sha256: str) -> Volume:
        with self._lock:
            if sha256 not in self._volumes:
                raise UnknownVolume(f"volume {sha256[:12]}... is not on the server; send it (PUT /volumes/{{sha256}})")
            self._volumes.move_to_end(sha256)
            return self._volumes[sha256]

    def file(self, sha256: str) -> Path:
        """The volume as an NRRD file (written once), for jobs that read files."""
        from ..volume_io import write_volume

        path = self.folder / f"{sha256}.nrrd"
        if not path.is_file():
            write_volume(self.get(sha256), path)
        return path


@dataclass
class BoundSegmenter:
    """A model bound to a volume (with its embedding cache) and the lock that serialises the model's use."""

    volume_segmenter: object  # vfmlab.segment.volume_segmenter.VolumeSegmenter
    lock: threading.Lock


class SegmenterPool:
    """Models built once by name; one :class:`VolumeSegmenter` per (model, volume), least recently used dropped."""

    def __init__(self, factory: SegmenterFactory, capacity: int):
        self.factory = factory
        self.capacity = capacity
        self._models: dict[str, tuple[object, threading.Lock]] = {}
        self._bound: OrderedDict[tuple[str, str], BoundSegmenter] = OrderedDict()
        self._lock = threading.Lock()

    def _model(self, name: str) -> tuple[object, threading.Lock]:
        if name not in self._models:
            self._models[name] = (self.factory(name), threading.Lock())
        return self._models[name]

    def bind(self, model: str, sha256: str, volume: Volume) -> BoundSegmenter:
        from ..segment.volume_segmenter import VolumeSegmenter

        with self._lock:  # one build at a time: two requests for a new model must not build it twice
            key = (model, sha256)
            if key not in self._bound:
                segmenter, lock = self._model(model)
                self._bound[key] = BoundSegmenter(VolumeSegmenter(segmenter, volume), lock)
            self._bound.move_to_end(key)
            while len(self._bound) > self.capacity:
                self._bound.popitem(last=False)
            return self._bound[key]

    def loaded_models(self) -> list[str]:
        with self._lock:
            return sorted(self._models)


def default_segmenter_factory(device: str, backend: str) -> SegmenterFactory:
    def build(name: str):
        from ..segment.registry import build_segmenter

        return build_segmenter(name, device=None if device == "auto" else device, backend=backend)

    return build
