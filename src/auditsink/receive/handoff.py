"""Connections, from the writer's listening socket to the receiver holding the fewest (issue 16).

The receivers first shared the listening socket and let the kernel pick. It picks whichever
process is waiting in ``accept`` (the one that is idle the moment the connection comes), and
kube-apiserver, like wrk, opens its few keep-alive connections at once: one receiver took all
8 of them and served every request on one core while the other idled. Since the connections
live for minutes, where each one lands is the whole balance.

So the writer accepts (one system call per connection, nothing per request) and passes each
descriptor (``SCM_RIGHTS`` over a ``SOCK_SEQPACKET`` pair) to the receiver with the fewest
open connections, by its own count of those handed over less the count each receiver keeps,
in shared memory, of those it closed. TLS handshakes happen in the receivers.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Sequence
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from auditsink.receive.relay import SharedCounts
from auditsink.receive.server import _Loop, _Server

log = logging.getLogger("auditsink.serve")

_MESSAGE = b"c"  # one connection per message: a message carries its descriptor
_BATCH = 64      # descriptors read per wake-up, at most


def channel_pair() -> tuple[socket.socket, socket.socket]:
    """The writer's end and a receiver's end of the channel connections go through."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


class Dispatcher:
    """In the writer: accept on ``listener`` and hand each connection to a receiver."""

    def __init__(self, listener: socket.socket, channels: Sequence[socket.socket],
                 closed: SharedCounts) -> None:
        self.listener = listener
        self.channels = list(channels)
        self.closed = closed
        self.handed = [0] * len(self.channels)
        self.shed = 0  # connections closed because no receiver could take them
        self._task: asyncio.Task[None] | None = None
        for channel in self.channels:
            # A receiver too busy to read its channel must not stall the writer's loop.
            channel.setblocking(False)

    def open_connections(self) -> list[int]:
        """Connections each receiver holds (handed over, not yet closed)."""
        return [handed - self.closed.get(index) for index, handed in enumerate(self.handed)]

    def start(self) -> None:
        self.listener.setblocking(False)
        self._task = asyncio.create_task(self._accept())

    async def stop(self) -> None:
        """Stop accepting: new connections are refused from now on."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self.listener.close()

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                connection, _ = await loop.sock_accept(self.listener)
            except OSError as exc:  # out of descriptors, most likely: let some close
                log.warning("accepting a connection failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            with connection:  # the receiver has its own descriptor once it is sent
                self._hand(connection)

    def _hand(self, connection: socket.socket) -> None:
        held = self.open_connections()
        for index in sorted(range(len(self.channels)), key=held.__getitem__):
            try:
                socket.send_fds(self.channels[index], [_MESSAGE], [connection.fileno()])
            except OSError:  # its channel is full, or it is gone: the next one
                continue
            self.handed[index] += 1
            return
        self.shed += 1
        if self.shed == 1 or self.shed % 1000 == 0:
            log.warning("no receiver could take a new connection (%d closed so far)", self.shed)

    def collect(self) -> list[Metric]:
        gauge = GaugeMetricFamily("auditsink_receiver_connections",
                                  "Open connections each receiver process holds.",
                                  labels=["receiver"])
        for index, count in enumerate(self.open_connections()):
            gauge.add_metric([str(index)], count)
        return [gauge]


class HandoffServer(_Server):
    """In a receiver: uvicorn's server over the connections the writer hands over on
    ``channel``, instead of a listening socket of its own. Connections it closes (or whose
    TLS handshake fails) are counted in ``closed[slot]`` for the writer's balance."""

    def __init__(self, config: Any, channel: socket.socket, closed: SharedCounts,
                 slot: int) -> None:
        super().__init__(config)
        self.channel = channel
        self.closed = closed
        self.slot = slot
        self._handshakes: set[asyncio.Task[None]] = set()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])  # no listener: nothing for uvicorn to create
        self.channel.setblocking(False)
        self._counted = _counting(self.config.http_protocol_class, self.closed, self.slot)
        asyncio.get_running_loop().add_reader(self.channel.fileno(), self._receive)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._stop_receiving()
        await super().shutdown(sockets)

    def _stop_receiving(self) -> None:
        if self.channel.fileno() >= 0:
            asyncio.get_running_loop().remove_reader(self.channel.fileno())

    def _receive(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(_BATCH):
            try:
                message, fds, _, _ = socket.recv_fds(self.channel, len(_MESSAGE), 1)
            except BlockingIOError:
                return
            except OSError:
                message, fds = b"", []
            if not message and not fds:  # the writer is gone (the relay notices too)
                self._stop_receiving()
                return
            for fd in fds:
                connection = socket.socket(fileno=fd)
                if self.should_exit:
                    connection.close()
                    self.closed.add(self.slot)
                    continue
                task = loop.create_task(self._take(connection))
                self._handshakes.add(task)
                task.add_done_callback(self._handshakes.discard)

    async def _take(self, connection: socket.socket) -> None:
        ssl = self.config.ssl
        protocol = self._counted(config=self.config, server_state=self.server_state,
                                 app_state=self.lifespan.state)
        try:
            # The transport owns the socket from here, and closes it even on failure.
            await asyncio.get_running_loop().connect_accepted_socket(
                lambda: protocol, connection, ssl=ssl,
                ssl_handshake_timeout=_Loop.tls_handshake_timeout if ssl else None)
        except Exception as exc:  # a failed or timed-out TLS handshake: the peer's problem
            log.debug("a handed-over connection failed before its first request: %s", exc)
        if not protocol.made:  # then its connection_lost never comes: count it here
            self.closed.add(self.slot)


def _counting(protocol_class: Any, closed: SharedCounts, slot: int) -> Any:
    """``protocol_class``, counting each closed connection in ``closed[slot]``."""

    class Counted(protocol_class):  # type: ignore[misc]
        made = False

        def connection_made(self, transport: Any) -> None:
            self.made = True
            super().connection_made(transport)

        def connection_lost(self, exc: Exception | None) -> None:
            super().connection_lost(exc)
            closed.add(slot)

    return Counted
