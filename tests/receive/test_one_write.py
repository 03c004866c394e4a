"""A response's head and body leave in one send (receive/server.py, _OneWritePerResponse),
over a real uvloop socket transport: fewer system calls per request in blocking mode."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvloop

from auditsink.receive.server import _OneWritePerResponse


class _Counting:
    """The real transport, with its write calls counted."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        self.transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


async def _pair() -> tuple[_Counting, socket.socket]:
    ours, theirs = socket.socketpair()
    transport, _ = await asyncio.get_running_loop().create_connection(asyncio.Protocol,
                                                                      sock=ours)
    theirs.settimeout(5)
    return _Counting(transport), theirs


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _run(test: Any) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(test())


def test_head_and_body_go_out_together_when_the_response_completes() -> None:
    async def test() -> None:
        counting, theirs = await _pair()
        writes = _OneWritePerResponse(counting, asyncio.get_running_loop())  # type: ignore[arg-type]
        writes.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        writes.write(b"{}")
        assert counting.writes == []  # held
        writes.flush()  # what on_response_complete does
        assert counting.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
        await asyncio.sleep(0)  # the end-of-step flush finds nothing left
        assert len(counting.writes) == 1
        assert _read(theirs, 40).endswith(b"\r\n\r\n{}")
        counting.close()
        theirs.close()
    _run(test)


def test_a_write_not_followed_by_completion_leaves_at_the_end_of_the_step() -> None:
    async def test() -> None:
        counting, theirs = await _pair()
        writes = _OneWritePerResponse(counting, asyncio.get_running_loop())  # type: ignore[arg-type]
        writes.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # e.g. 100-continue, or a streamed body
        await asyncio.sleep(0)
        assert counting.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
        assert _read(theirs, 25) == b"HTTP/1.1 100 Continue\r\n\r\n"
        counting.close()
        theirs.close()
    _run(test)


def test_close_sends_what_is_held_and_abort_drops_it() -> None:
    async def test() -> None:
        counting, theirs = await _pair()
        writes = _OneWritePerResponse(counting, asyncio.get_running_loop())  # type: ignore[arg-type]
        writes.write(b"last words")
        writes.close()
        await asyncio.sleep(0.05)
        assert writes.is_closing()
        assert _read(theirs, 100) == b"last words"  # then EOF
        theirs.close()

        counting, theirs = await _pair()
        writes = _OneWritePerResponse(counting, asyncio.get_running_loop())  # type: ignore[arg-type]
        writes.write(b"never sent")
        writes.abort()
        await asyncio.sleep(0.05)
        assert counting.writes == []
        assert _read(theirs, 100) == b""
        theirs.close()
    _run(test)
