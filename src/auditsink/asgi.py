"""The few ASGI pieces every listener shares: answering JSON, streaming, reading the query.

auditsink's listeners are plain ASGI apps (uvicorn runs them); this keeps their answers
alike: a JSON body with its length, or a streamed body whose chunks are produced in a worker
thread (store reads block), never all in memory.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator, MutableMapping, Sequence
from typing import Any
from urllib.parse import parse_qs

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = Sequence[tuple[bytes, bytes]]

_DONE = object()


def query_of(scope: Scope) -> dict[str, list[str]]:
    """The query string as ``parse_qs`` gives it (blank values kept: ``apiGroup=`` is the
    core group)."""
    text = scope.get("query_string", b"").decode("latin-1")
    return parse_qs(text, keep_blank_values=True)


def header(scope: Scope, name: bytes) -> bytes:
    """The first value of a request header (lower-case ``name``), b"" when absent."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return b""


async def send_bytes(send: Send, status: int, content_type: str, body: bytes,
                     headers: Headers = ()) -> None:
    """One whole answer."""
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode()),
        *headers]})
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, status: int, payload: Any, headers: Headers = ()) -> None:
    """``payload`` as a JSON answer."""
    body = json.dumps(payload, default=str, ensure_ascii=False).encode()
    await send_bytes(send, status, "application/json", body, headers)


async def send_stream(send: Send, status: int, content_type: str, chunks: Iterator[bytes],
                      headers: Headers = ()) -> None:
    """A streamed answer: ``chunks`` is iterated in a worker thread, one chunk at a time, so a
    long export neither blocks the event loop nor sits in memory whole."""
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", content_type.encode()), *headers]})
    while True:
        chunk = await asyncio.to_thread(next, chunks, _DONE)
        if chunk is _DONE:
            break
        assert isinstance(chunk, bytes)
        if chunk:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})
