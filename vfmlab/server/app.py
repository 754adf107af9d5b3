"""The model server's HTTP API (FastAPI): volumes, prompt -> mask, propagation, encoding ahead, jobs.

``create_app(config, token)`` builds it; ``vfmlab serve`` runs it with uvicorn. Every route but
``GET /health`` needs the bearer token (:mod:`.gate`). Errors come back as ``{"error": "..."}`` with a
4xx status that names the problem; an unexpected failure is a 500 that says to read the server log,
never a traceback.
"""
from __future__ import annotations

import hashlib
import json
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response

from .. import __version__
from ..client.wire import WireError, encode_mask
from ..errors import InputError, VfmlabError
from .bundles import BundleStore, UnknownBundle
from .config import ServerConfig
from .gate import Gate
from .jobs import JobBoard, task_names
from .operations import Operation, Operations, encoding_work, propagation_work
from .schemas import EncodingRequest, JobRequest, MetricsRequest, PropagationRequest, SlicePromptRequest
from .state import SegmenterFactory, SegmenterPool, UnknownVolume, VolumeStore, default_segmenter_factory

log = logging.getLogger("vfmlab.server")
WHOLE_FILE_BYTES = 64 << 20  # job files up to this size are read whole before they are sent


class ServerState:
    """Everything the routes share; built once per app."""

    def __init__(self, config: ServerConfig, segmenter_factory: SegmenterFactory | None = None):
        self.config = config
        self.server_id = _server_id(config.workdir)
        self.store = VolumeStore(config.max_volumes, config.workdir / "volumes")
        self.segmenters = SegmenterPool(segmenter_factory or default_segmenter_factory(config.device, config.backend),
                                        config.max_segmenters)
        self.operations = Operations()
        self.bundles = BundleStore(config.workdir / "bundles")
        self.jobs = JobBoard(config.workdir / "jobs", self.store, self.bundles)

    def bind(self, request: SlicePromptRequest | EncodingRequest):
        return self.segmenters.bind(request.model, request.volume, self.store.get(request.volume))

    def shutdown(self) -> None:
        self.operations.shutdown()
        self.jobs.shutdown()


def _server_id(workdir) -> str:
    """The id of this work folder (made once): clients recognise the server that holds their jobs by it."""
    import uuid

    path = workdir / "server_id"
    if not path.is_file():
        workdir.mkdir(parents=True, exist_ok=True)
        path.write_text(uuid.uuid4().hex, encoding="utf-8")
    return path.read_text(encoding="utf-8").strip()


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _validation_message(error: RequestValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
        parts.append(f"{where or 'body'}: {item.get('msg', 'invalid')}")
    return "; ".join(parts)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(_, error: RequestValidationError):
        return _error(422, _validation_message(error))

    @app.exception_handler(HTTPException)
    async def http_error(_, error: HTTPException):
        return _error(error.status_code, str(error.detail))

    @app.exception_handler(UnknownVolume)
    async def unknown_volume(_, error: UnknownVolume):
        return _error(404, str(error))

    @app.exception_handler(UnknownBundle)
    async def unknown_bundle(_, error: UnknownBundle):
        return _error(404, str(error))

    @app.exception_handler(VfmlabError)
    async def user_error(_, error: VfmlabError):
        return _error(400, str(error))

    @app.exception_handler(WireError)
    async def wire_error(_, error: WireError):
        return _error(400, str(error))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception):
        log.error("%s %s failed", request.method, request.url.path, exc_info=error)
        return _error(500, f"internal error ({type(error).__name__}); the server log has the details")


def create_app(config: ServerConfig, token: str, segmenter_factory: SegmenterFactory | None = None) -> FastAPI:
    """The app, its state in ``app.state.vfmlab``, wrapped in the token and size :class:`Gate`."""
    state = ServerState(config, segmenter_factory)

    @asynccontextmanager
    async def lifespan(_):
        yield
        await run_in_threadpool(state.shutdown)

    app = FastAPI(title="VFM Volume Lab model server", version=__version__, lifespan=lifespan)
    app.state.vfmlab = state
    _install_error_handlers(app)
    _add_volume_routes(app, state)
    _add_segment_routes(app, state)
    _add_job_routes(app, state)
    app.add_middleware(Gate, token=token, max_upload_bytes=config.max_upload_mb << 20,
                       max_request_bytes=config.max_request_kb << 10)
    return app


def _add_volume_routes(app: FastAPI, state: ServerState) -> None:
    @app.get("/health")
    def health():
        return {"status": "ok", "version": __version__, "server_id": state.server_id}

    @app.get("/models")
    def models():
        from ..models.listing import model_rows

        return {"models": model_rows(), "loaded": state.segmenters.loaded_models(), "tasks": task_names()}

    @app.get("/volumes/{sha256}")
    def volume_info(sha256: str):
        volume = state.store.get(sha256)
        return {"sha256": sha256, "shape": list(volume.array.shape), "spacing": list(volume.spacing)}

    @app.put("/volumes/{sha256}")
    async def put_volume(sha256: str, request: Request):
        volume = await run_in_threadpool(state.store.add, sha256, await _named_body(request, sha256))
        return {"sha256": sha256, "shape": list(volume.array.shape), "spacing": list(volume.spacing)}

    @app.get("/bundles/{sha256}")
    def bundle_info(sha256: str):
        state.bundles.path(sha256)
        return {"sha256": sha256}

    @app.put("/bundles/{sha256}")
    async def put_bundle(sha256: str, request: Request):
        """A folder for jobs, as a zip archive (``ModelClient.send_folder``); named ``bundle:<sha256>`` in params."""
        return await run_in_threadpool(state.bundles.add, sha256, await _named_body(request, sha256))

    @app.post("/metrics")
    def metrics(request: MetricsRequest):
        """Dice, IoU, precision, recall and HD95 (mm) of a predicted mask against a reference mask."""
        import numpy as np

        from ..metrics import segment_metrics

        prediction, reference = state.store.get(request.prediction), state.store.get(request.reference)
        if prediction.array.shape != reference.array.shape or not np.allclose(prediction.ijk_to_ras,
                                                                               reference.ijk_to_ras, atol=1e-4):
            raise HTTPException(400, "the prediction and the reference lie on different grids; "
                                     "resample one onto the other's volume first")
        return segment_metrics(prediction.array != 0, reference.array != 0, prediction.spacing[::-1])


async def _named_body(request: Request, sha256: str) -> bytes:
    """The upload's bytes, checked against the sha256 the path names them by."""
    payload = await request.body()
    digest = await run_in_threadpool(lambda: hashlib.sha256(payload).hexdigest())
    if digest != sha256:
        raise HTTPException(400, f"the body's sha256 is {digest}, not the {sha256} named in the path")
    return payload


def _add_segment_routes(app: FastAPI, state: ServerState) -> None:
    @app.post("/segment")
    def segment(request: SlicePromptRequest):
        bound = state.bind(request)
        with bound.lock:
            prediction = bound.volume_segmenter.segment_slice(request.axis, request.index, request.prompt())
        return {"axis": request.axis, "index": request.index, "iou": float(prediction.iou),
                "mask": encode_mask(prediction.mask)}

    @app.post("/propagations", status_code=202)
    def start_propagation(request: PropagationRequest):
        bound = state.bind(request)
        count = bound.volume_segmenter.stack(request.axis).shape[0]
        prompts = request.prompts()
        outside = sorted(index for index in prompts if index >= count)
        if outside:
            raise InputError(f"{request.axis} slices {outside} are outside the volume (0..{count - 1})")
        work = propagation_work(bound, request.axis, prompts, request.config())
        return state.operations.start(Operation("propagation", count), work).status()

    @app.post("/encodings", status_code=202)
    def start_encoding(request: EncodingRequest):
        bound = state.bind(request)
        count = bound.volume_segmenter.stack(request.axis).shape[0]
        indices = list(range(count)) if request.indices is None else [i for i in request.indices if 0 <= i < count]
        return state.operations.start(Operation("encoding", len(indices)), encoding_work(bound, request.axis,
                                                                                          indices)).status()

    def operation(operation_id: str) -> Operation:
        found = state.operations.get(operation_id)
        if found is None:
            raise HTTPException(404, f"no operation {operation_id} (finished long ago, or from another server run)")
        return found

    @app.get("/operations/{operation_id}")
    def operation_status(operation_id: str):
        return operation(operation_id).status()

    @app.get("/operations/{operation_id}/mask")
    def operation_mask(operation_id: str):
        found = operation(operation_id)
        if found.mask is None:
            raise HTTPException(409, f"operation {operation_id} is {found.state} and has no mask")
        return {**found.result, "mask": encode_mask(found.mask)}

    @app.delete("/operations/{operation_id}")
    def cancel_operation(operation_id: str):
        found = operation(operation_id)
        found.cancel_event.set()
        return found.status()


def _job_status(job_id: str, job, since: int) -> dict:
    """``folder`` is the job's folder on the server: paths in results and events start with it."""
    return {"id": job_id, "state": job.state, "result": job.result, "reason": job.reason, "folder": str(job.workdir),
            "events": [json.loads(event.to_json()) for event in job.events[since:]], "count": len(job.events)}


def _add_job_routes(app: FastAPI, state: ServerState) -> None:
    def job(job_id: str):
        try:
            return state.jobs.get(job_id)
        except KeyError:
            raise HTTPException(404, f"no job {job_id} on this server") from None

    @app.post("/jobs", status_code=202)
    def start_job(request: JobRequest):
        job_id, started = state.jobs.start(request.task, request.params)
        return _job_status(job_id, started, 0)

    @app.get("/jobs/{job_id}")
    def job_status(job_id: str, since: int = 0):
        return _job_status(job_id, job(job_id), max(since, 0))

    @app.delete("/jobs/{job_id}")
    def cancel_job(job_id: str):
        found = job(job_id)
        found.cancel()
        return _job_status(job_id, found, len(found.events))

    @app.post("/jobs/{job_id}/resume", status_code=202)
    def resume_job(job_id: str):
        try:
            return _job_status(job_id, state.jobs.resume(job_id), 0)
        except KeyError:
            raise HTTPException(404, f"no job {job_id} on this server") from None

    @app.get("/jobs/{job_id}/files")
    def job_files(job_id: str):
        job(job_id)
        return {"files": state.jobs.files(job_id)}

    @app.get("/jobs/{job_id}/files/{relative:path}")
    def job_file(job_id: str, relative: str):
        job(job_id)
        try:
            path = state.jobs.file(job_id, relative)
        except KeyError:
            raise HTTPException(404, f"job {job_id} has no file {relative}") from None
        if path.stat().st_size > WHOLE_FILE_BYTES:
            return FileResponse(path)
        # Read at once: a running job appends to its logs and metrics, and a streamed file that grows
        # or is replaced meanwhile would not match the length announced first.
        return Response(path.read_bytes(), media_type="application/octet-stream")
