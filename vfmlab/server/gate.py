"""Checks every request passes before the app reads its body: the bearer token, then the size limits.

An ASGI middleware rather than a FastAPI dependency so that an unauthorised or oversized upload is
answered before a byte of its body is read.
"""
from __future__ import annotations

import json
import secrets

PUBLIC_PATHS = ("/health",)
UPLOAD_PREFIXES = ("/volumes/", "/bundles/")


class Gate:
    def __init__(self, app, token: str, max_upload_bytes: int, max_request_bytes: int):
        self.app = app
        self.token = token.encode("utf-8")
        self.max_upload_bytes = max_upload_bytes
        self.max_request_bytes = max_request_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        refusal = self.refusal(scope)
        if refusal is None:
            return await self.app(scope, receive, send)
        status, message, extra = refusal
        body = json.dumps({"error": message}).encode("utf-8")
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def refusal(self, scope) -> tuple[int, str, list] | None:
        headers = dict(scope["headers"])
        if scope["path"] not in PUBLIC_PATHS:
            scheme, _, given = headers.get(b"authorization", b"").partition(b" ")
            if scheme.lower() != b"bearer" or not secrets.compare_digest(given.strip(), self.token):
                return 401, "a valid 'Authorization: Bearer <token>' header is needed (the token the server printed)", \
                    [(b"www-authenticate", b"Bearer")]
        if scope["method"] in ("GET", "HEAD", "DELETE"):
            return None
        if b"transfer-encoding" in headers:
            return 411, "send the body with a Content-Length (chunked bodies are not accepted)", []
        try:
            length = int(headers.get(b"content-length", b"0"))
        except ValueError:
            return 400, "the Content-Length header is not a number", []
        limit = self.max_upload_bytes if scope["path"].startswith(UPLOAD_PREFIXES) else self.max_request_bytes
        if length > limit:
            return 413, f"the request body ({length} bytes) is over the server's limit of {limit} bytes", []
        return None
