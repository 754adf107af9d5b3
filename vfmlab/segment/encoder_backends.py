"""Where a prompt segmenter's image encoder runs: torch on the CPU, torch on a GPU, or ONNX Runtime.

The image encoder is nearly all of a SAM-family model's cost per slice, and ONNX Runtime runs the same
graph about twice as fast as eager torch on a few CPU cores (LiteMedSAM on 2 threads: ~0.65 s against
~1.35 s, equal within 1e-5). Only :attr:`PromptSegmenter.encode_image` is replaced: prompt encoding
and mask decoding stay in torch, where the HQ parts are trained.

An encoder is exported once into ``cache_dir()/onnx``, on its first use, and reused. A sidecar JSON
beside the ``.onnx`` file records what it was exported from; a file whose record is missing or names
other weights, whose bytes do not match its record, or that ONNX Runtime cannot load is refused and
exported again.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_path, write_json
from ..devices import resolve_device
from ..errors import InputError, WeightsError
from ..weights import cache_dir, get_entry, resolve, sha256_of
from .segmenter import PromptSegmenter

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "cuda", "onnx")
EXPORT_FOLDER = "onnx"
OPSET = 17
INPUT_NAME = "image"
# Families whose encoder exports with the TorchScript exporter, and how many early feature maps (the
# HQ decoder's fusion input) each returns after the embedding: the exporter needs every output named.
EARLY_OUTPUTS = {"litemedsam": 0, "hq_litemedsam": 1, "sam_vit_b": 0, "hq_sam_vit_b": 4, "hq_sam_vit_tiny": 1}
# Exports kept per family (the base weights and a few fine-tunes); each fine-tune would add one more.
KEEP_PER_FAMILY = 3

Encode = Callable[[torch.Tensor], tuple[torch.Tensor, list[torch.Tensor] | None]]


@dataclass(frozen=True)
class BackendChoice:
    """Where the encoder runs (``torch``, ``cuda`` or ``onnx``), on which torch device, and why."""

    backend: str
    device: torch.device  # where the model (and, except for onnx, the encoder) lives
    reason: str
    explicit: bool  # asked for by name: a failure raises instead of falling back to torch


@dataclass(frozen=True)
class EncoderSpec:
    """What an export needs: the family, the square input size ``S`` and the torch encoder."""

    family: str
    input_size: int
    encode_image: Encode  # torch: (1, 3, S, S) → (embedding, early features or None)
    encoder: nn.Module  # the module whose parameters encode_image uses


@dataclass(frozen=True)
class ExportRecord:
    """The sidecar JSON of an exported encoder: what it was made from, and its own sha256."""

    family: str
    weights_sha256: str
    input_size: int
    opset: int
    torch_version: str
    outputs: list[str]
    onnx_sha256: str
    export_seconds: float


def onnx_problem(family: str) -> str | None:
    """Why ``family``'s encoder cannot run in ONNX Runtime here, or None when it can."""
    if family not in EARLY_OUTPUTS:
        return f"the {family} image encoder has no ONNX export"
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        return f"onnxruntime cannot be imported ({exc}); install it with pip install onnxruntime"
    return None


def choose_backend(family: str, backend: str = "auto", device: str | None = None) -> BackendChoice:
    """Resolve ``backend`` (one of :data:`BACKENDS`) and ``device`` into a :class:`BackendChoice`.

    ``auto``: cuda when ``device`` is a GPU or, with no ``device``, when torch sees one; otherwise
    onnx when onnxruntime imports and the family exports; otherwise torch. An explicit backend that
    contradicts ``device`` or cannot run here raises.
    """
    if backend not in BACKENDS:
        raise InputError(f"unknown encoder backend '{backend}'; choose one of {', '.join(BACKENDS)}")
    asked = torch.device(device) if device else None  # checked against the backend below
    if backend == "auto":
        choice = _auto(family, asked)
        log.info("%s image encoder: %s backend (%s)", family, choice.backend, choice.reason)
        return choice
    if backend == "cuda":
        if asked is not None and asked.type != "cuda":
            raise InputError(f"backend 'cuda' runs on a GPU, but device '{device}' was asked for")
        if not torch.cuda.is_available():
            raise InputError("backend 'cuda' needs a GPU that torch can see, and there is none here")
        return BackendChoice("cuda", asked or torch.device("cuda"), "asked for", True)
    if asked is not None and asked.type == "cuda":
        raise InputError(f"backend '{backend}' runs on the CPU, but device '{device}' was asked for; "
                         "use backend 'cuda' (or 'auto') for a GPU")
    if backend == "onnx" and (problem := onnx_problem(family)) is not None:
        raise WeightsError(f"backend 'onnx' cannot run here: {problem}")
    return BackendChoice(backend, asked or torch.device("cpu"), "asked for", True)


def _auto(family: str, asked: torch.device | None) -> BackendChoice:
    if asked is not None and asked.type == "cuda":
        return BackendChoice("cuda", asked, f"device '{asked}' asked for", False)
    if asked is None and resolve_device().type == "cuda":
        return BackendChoice("cuda", torch.device("cuda"), "torch sees a GPU", False)
    if asked is not None and asked.type != "cpu":  # e.g. mps: only torch runs there
        return BackendChoice("torch", asked, f"device '{asked}' asked for", False)
    problem = onnx_problem(family)
    if problem is not None:
        return BackendChoice("torch", torch.device("cpu"), f"ONNX Runtime not used: {problem}", False)
    return BackendChoice("onnx", torch.device("cpu"), "on the CPU, with onnxruntime installed", False)


def weights_sha256(name: str, local_file: str | Path | None = None) -> str:
    """sha256 of the weights ``name`` is built from: the registry's published hash, else the file's own."""
    entry = get_entry(name)
    if local_file is None and entry.sha256:
        return entry.sha256  # resolve() checked the file against it when the weights were loaded
    return sha256_of(resolve(name, local_file))


def export_path(family: str, weights: str, input_size: int) -> Path:
    """Where the encoder of ``family`` with weights of sha256 ``weights`` is exported."""
    return cache_dir() / EXPORT_FOLDER / f"{family}-{weights[:16]}-{input_size}px-opset{OPSET}.onnx"


def record_path(onnx_path: Path) -> Path:
    return onnx_path.with_suffix(".json")


def output_names(family: str) -> list[str]:
    return ["embedding", *(f"early_{i}" for i in range(EARLY_OUTPUTS[family]))]


class _FlatEncoder(nn.Module):
    """``encode_image`` as a module returning a flat tuple ``(embedding, *early)``, as exporters want."""

    def __init__(self, spec: EncoderSpec):
        super().__init__()
        self.encoder = spec.encoder  # registers the parameters ``encode_image`` uses, so they export as weights
        self._encode = spec.encode_image

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        embedding, early = self._encode(image)
        return (embedding, *(early or ()))


def export_encoder(spec: EncoderSpec, weights: str, path: Path) -> ExportRecord:
    """Export the encoder for a ``(1, 3, S, S)`` CPU input to ``path`` (atomically) and write its record.

    ``weights`` is the sha256 of the weights the encoder holds.
    """
    names = output_names(spec.family)
    example = torch.zeros(1, 3, spec.input_size, spec.input_size)
    began = time.perf_counter()
    with atomic_path(path, suffix=".onnx") as temp, warnings.catch_warnings():
        # The TorchScript exporter is deprecated but is the one that handles these models without
        # onnxscript; its tracer warnings are about Python-side shape arithmetic, fixed for a fixed S,
        # and the folding notes about strided slices only mean those stay runtime ops.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Constant folding")
        torch.onnx.export(_FlatEncoder(spec).eval(), (example,), str(temp), dynamo=False, opset_version=OPSET,
                          input_names=[INPUT_NAME], output_names=names)
        onnx_sha256 = sha256_of(temp)
    record = ExportRecord(spec.family, weights, spec.input_size, OPSET, torch.__version__, names, onnx_sha256,
                          round(time.perf_counter() - began, 2))
    write_json(record_path(path), asdict(record))
    log.info("exported the %s image encoder to %s in %.1f s", spec.family, path, record.export_seconds)
    return record


def stale_reason(path: Path, spec: EncoderSpec, weights: str) -> str | None:
    """Why the export at ``path`` must not be used for ``spec`` with these weights, or None when it may."""
    if not path.is_file():
        return "it does not exist"
    sidecar = record_path(path)
    if not sidecar.is_file():
        return f"its record {sidecar.name} is missing"
    try:
        record = ExportRecord(**json.loads(sidecar.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as exc:
        return f"its record {sidecar.name} cannot be read ({exc})"
    expected = {"family": spec.family, "weights_sha256": weights, "input_size": spec.input_size, "opset": OPSET,
                "outputs": output_names(spec.family)}
    for field, value in expected.items():
        if getattr(record, field) != value:
            return f"it was exported with {field} {getattr(record, field)!r}, but {value!r} is needed"
    actual = sha256_of(path)
    if actual != record.onnx_sha256:
        return f"its sha256 is {actual}, but its record says {record.onnx_sha256} (changed or truncated)"
    return None


def open_session(path: Path):
    """An ONNX Runtime CPU session on ``path``, with as many threads as torch uses."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = torch.get_num_threads()  # callers size torch's threads to the machine
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def load_or_export(spec: EncoderSpec, weights: str):
    """A session on the cached export for these weights when it checks out, else on a fresh export.

    A cached file that is stale, changed or that ONNX Runtime cannot load is refused with a warning
    naming it and why, and exported again.
    """
    path = export_path(spec.family, weights, spec.input_size)
    problem = stale_reason(path, spec, weights)
    if problem is None:
        try:
            session = open_session(path)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf/... types
            problem = f"ONNX Runtime cannot load it ({_first_line(exc)})"
        else:
            os.utime(path)  # recently used: pruning keeps it
            return session
    if path.exists():
        log.warning("%s: refusing this ONNX export of the %s image encoder: %s; exporting it again",
                    path, spec.family, problem)
    export_encoder(spec, weights, path)
    prune_exports(spec.family)
    return open_session(path)


def prune_exports(family: str, keep: int = KEEP_PER_FAMILY) -> None:
    """Delete all but the ``keep`` most recently used exports of ``family`` (and their records)."""
    folder = cache_dir() / EXPORT_FOLDER
    exports = sorted(folder.glob(f"{family}-*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in exports[keep:]:
        old.unlink(missing_ok=True)
        record_path(old).unlink(missing_ok=True)


class OnnxImageEncoder:
    """``encode_image`` in ONNX Runtime: ``(1, 3, S, S)`` → ``(embedding, early | None)`` as CPU tensors.

    The session opens on the first call, exporting the encoder unless the cache holds a valid export:
    a segmenter that never encodes (a layout check, a fine-tune on cached embeddings) exports nothing.
    If that fails under ``auto``, the segmenter goes back to its torch encoder, with the reason logged.
    """

    def __init__(self, segmenter: PromptSegmenter, encoder: nn.Module, local_file: str | Path | None,
                 explicit: bool):
        self.spec = EncoderSpec(segmenter.name, segmenter.image_size, segmenter.encode_image, encoder)
        self.segmenter = segmenter
        self.local_file = local_file
        self.explicit = explicit
        self.session = None
        self.path: Path | None = None
        self._fell_back = False
        self._lock = threading.Lock()  # background encoders must not export the same file twice

    def load(self) -> bool:
        """Open the session now (if not yet); False when the encoder fell back to torch."""
        with self._lock:
            if self.session is None and not self._fell_back:
                self._open()
        return self.session is not None

    def _open(self) -> None:
        try:
            weights = weights_sha256(self.spec.family, self.local_file)
            self.session = load_or_export(self.spec, weights)
            self.path = export_path(self.spec.family, weights, self.spec.input_size)
        except Exception as exc:  # the exporter and ORT fail in many types; the reason is what matters
            reason = f"the ONNX export of the {self.spec.family} image encoder failed ({_first_line(exc)})"
            if self.explicit:
                raise WeightsError(f"{reason}; use backend 'torch'") from exc
            log.warning("%s; it runs in torch instead", reason)
            self._fell_back = True
            self.segmenter.encode_image, self.segmenter.backend = self.spec.encode_image, "torch"

    def __call__(self, image: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        if not self.load():
            return self.spec.encode_image(image)
        array = np.ascontiguousarray(image.detach().cpu().numpy(), dtype=np.float32)
        embedding, *early = (torch.from_numpy(o) for o in self.session.run(None, {INPUT_NAME: array}))
        return embedding, (early or None)


def place_encoder(segmenter: PromptSegmenter, choice: BackendChoice, encoder: nn.Module,
                  local_file: str | Path | None = None) -> PromptSegmenter:
    """Set ``segmenter.backend`` and, for onnx, swap its ``encode_image`` for an :class:`OnnxImageEncoder`.

    ``segmenter.name`` must still be the family (the registry renames user models afterwards);
    ``encoder`` is the module ``encode_image`` runs; ``local_file`` the weights file the model was
    built from, ``None`` for the registry's own.
    """
    segmenter.backend = choice.backend
    if choice.backend == "onnx":
        segmenter.encode_image = OnnxImageEncoder(segmenter, encoder, local_file, choice.explicit)
    return segmenter


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
