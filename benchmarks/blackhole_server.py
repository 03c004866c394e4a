"""A webhook that reads each POST and answers 200 without looking at the body: the ceiling.

It measures the harness itself (wrk, loopback, one Python event loop reading the bytes), not
a backend: no backend written in Python can beat it on one core. If wrk still has CPU to spare
while this server is saturated, wrk is not what limits the other targets.

    python -m benchmarks.blackhole_server --port 8080
"""

from __future__ import annotations

import argparse
import asyncio

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


class Blackhole(asyncio.Protocol):
    """HTTP/1.1 keep-alive, Content-Length bodies only (what kube-apiserver sends)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.buf = bytearray()
        self.need = -1  # body bytes still to skip, -1 while reading headers

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            if self.need < 0:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(self.buf[:end]).lower()
                start = head.find(b"content-length:")
                length = 0
                if start >= 0:
                    length = int(head[start + 15:].split(b"\r\n", 1)[0])
                del self.buf[:end + 4]
                self.need = length
            if self.need:
                take = min(self.need, len(self.buf))
                del self.buf[:take]
                self.need -= take
                if self.need:
                    return
            self.need = -1
            self.transport.write(RESPONSE)  # type: ignore[attr-defined]


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Blackhole, host, port, backlog=4096)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.blackhole_server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    try:
        import uvloop  # auditsink's own dependency: the fastest loop we have
    except ImportError:
        uvloop = None
    runner = uvloop.run if uvloop else asyncio.run
    try:
        runner(serve(args.host, args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
