"""The model server's settings, stated once (``vfmlab serve`` options default to these)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class ServerConfig:
    host: str = LOOPBACK  # loopback only; open to the network with --host 0.0.0.0 (and a token you share)
    port: int = 8765  # 0: any free port (the "listening" line says which)
    device: str = "auto"  # where the models run: auto (a GPU when torch sees one), cpu, cuda
    backend: str = "auto"  # where a segmenter's image encoder runs (see vfmlab.segment.encoder_backends)
    max_upload_mb: int = 2048  # largest volume upload accepted (413 above it)
    max_request_kb: int = 256  # largest JSON request accepted
    max_volumes: int = 4  # volumes kept in memory (least recently used dropped; the client re-sends one)
    max_segmenters: int = 4  # (model, volume) pairs kept with their embedding caches
    workdir: Path = Path.home() / ".cache" / "vfmlab" / "server"  # job folders and volumes written for jobs
