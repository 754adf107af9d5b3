"""``vfmlab serve``: the model server, on this machine for Slicer or on a GPU machine for several users."""
from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import socket
import sys
from pathlib import Path

from ..cli import Command, given_options
from ..client.local import TOKEN_ENV
from .config import LOOPBACK, ServerConfig


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help=f"address to listen on (default {ServerConfig.host}: this machine only; "
                                       "0.0.0.0 opens it to the network)")
    parser.add_argument("--port", type=int, help=f"port (default {ServerConfig.port}; 0 picks a free one)")
    parser.add_argument("--token", help=f"the bearer token clients must send (default: ${TOKEN_ENV}, else a random "
                                        "one, printed); prefer the variable: an argument shows in the process list")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="where the models run")
    parser.add_argument("--workdir", type=Path, help="folder for job runs and volumes written for jobs")
    parser.add_argument("--max-upload-mb", type=int, help="largest volume upload accepted")
    parser.add_argument("--ready-file", type=Path, help="write {url, pid} here once listening (for launchers)")


def listening_socket(host: str, port: int) -> socket.socket:
    """Bound before uvicorn starts, so that ``--port 0`` can report the port it got."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        from ..errors import VfmlabError

        raise VfmlabError(f"cannot listen on {host}:{port}: {error.strerror}; choose another --port") from None
    sock.listen(64)
    return sock


def _run(args: argparse.Namespace) -> int:
    import uvicorn

    from .. import atomic
    from .app import create_app

    config = ServerConfig(**given_options(host=args.host, port=args.port, device=args.device, workdir=args.workdir,
                                          max_upload_mb=args.max_upload_mb))
    token = args.token or os.environ.get(TOKEN_ENV)
    generated = not token
    token = token or secrets.token_urlsafe(24)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    sock = listening_socket(config.host, config.port)
    host, port = sock.getsockname()[:2]
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    announcement = {"event": "listening", "url": url, "pid": os.getpid()}
    print(json.dumps({**announcement, "token": token} if generated else announcement), flush=True)
    if config.host != LOOPBACK:
        print(f"vfmlab serve: open to the network on {url}; anyone with the token can use this machine's "
              "models and files", file=sys.stderr)
    if args.ready_file is not None:
        atomic.write_json(args.ready_file, announcement)
    server = uvicorn.Server(uvicorn.Config(create_app(config, token), log_level="info", access_log=False))
    server.run(sockets=[sock])
    return 0


COMMANDS = [Command("serve", "run the model server the Slicer panels (or --server clients) send prompts and jobs to",
                    _configure, _run)]
