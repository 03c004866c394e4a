"""``nats``: each event published to a NATS JetStream subject, for another team's pipeline.

A publish counts as delivered when JetStream acknowledged it (the stream stored it). Each
message carries ``Nats-Msg-Id``: the event's deduplication key hashed, so an event sent twice
(at-least-once, after a restart) is stored once inside the stream's duplicate window. With
``stream`` set, the stream is created if missing (file storage, the subject). Needs nats-py
(``pip install 'auditsink[bus]'``). Tested against a real nats-server.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from auditsink.forward.base import DeliveryError, Doc, Output, OutputConfig, Rejection


@dataclass
class NatsConfig(OutputConfig):
    """``url``: servers (``nats://h1:4222,nats://h2:4222``); ``subject``; ``stream``."""

    url: str = ""
    subject: str = "auditsink.forward"
    stream: str = ""
    replicas: int = 1

    target_key: ClassVar[str] = "url"

    def check(self) -> str:
        servers = [s for s in self.url.split(",") if s.strip()]
        if not servers or not all("://" in s for s in servers):
            return f"url {self.url!r}: expected nats://HOST:PORT[,nats://HOST:PORT...]"
        if not self.subject or " " in self.subject:
            return f"subject {self.subject!r}: expected a NATS subject like auditsink.forward"
        return ""


def message_id(doc: Doc) -> str:
    """The event's dedup key (cluster, auditID, stage, stageTimestamp), hashed."""
    event = doc.record.event
    key = "\x00".join((doc.record.cluster, event.auditID, event.stage, event.stageTimestamp))
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def render(docs: Sequence[Doc]) -> list[tuple[str, bytes]]:
    """(Nats-Msg-Id, payload) per event."""
    return [(message_id(doc), doc.body) for doc in docs]


class NatsOutput(Output):
    """Publishes each batch on its own event loop (the forwarder's thread is not async)."""

    config_class = NatsConfig

    def __init__(self, config: NatsConfig) -> None:
        super().__init__(config)
        self.config: NatsConfig = config
        self._loop = asyncio.new_event_loop()
        self._nc: Any = None
        self._js: Any = None

    def render(self, docs: Sequence[Doc]) -> list[tuple[str, bytes]]:
        return render(docs)

    async def _connect(self) -> None:
        from auditsink.bus.nats import import_nats

        nats = import_nats()
        servers = [s.strip() for s in self.config.url.split(",") if s.strip()]
        nc = await nats.connect(servers=servers, name="auditsink-forward",
                                connect_timeout=self.config.timeout, max_reconnect_attempts=0,
                                allow_reconnect=False)
        js = nc.jetstream(timeout=self.config.timeout)
        if self.config.stream:
            from nats.js import api

            try:
                await js.stream_info(self.config.stream)
            except nats.js.errors.NotFoundError:
                await js.add_stream(api.StreamConfig(
                    name=self.config.stream, subjects=[self.config.subject],
                    storage=api.StorageType.FILE, num_replicas=self.config.replicas,
                    duplicate_window=300.0))
        self._nc, self._js = nc, js

    async def _publish(self, payload: list[tuple[str, bytes]]) -> None:
        if self._nc is None or self._nc.is_closed or not self._nc.is_connected:
            await self._drop()
            await self._connect()
        subject = self.config.subject
        # All in flight at once, each waiting for its PubAck.
        publishes = (self._js.publish(subject, body, headers={"Nats-Msg-Id": ident})
                     for ident, body in payload)
        acks = await asyncio.gather(*publishes, return_exceptions=True)
        failed = [a for a in acks if isinstance(a, BaseException)]
        if failed:
            raise DeliveryError(f"nats {subject}: {len(failed)} of {len(payload)} publishes "
                                f"unacknowledged ({type(failed[0]).__name__}: {failed[0]})")

    async def _drop(self) -> None:
        if self._nc is not None:
            try:
                await self._nc.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass
        self._nc = self._js = None

    def send(self, payload: list[tuple[str, bytes]]) -> Sequence[Rejection]:
        try:
            self._loop.run_until_complete(self._publish(payload))
        except DeliveryError:
            raise
        except Exception as exc:  # connection refused, timeouts, JetStream errors
            self._loop.run_until_complete(self._drop())
            raise DeliveryError(f"nats {self.config.url}: {type(exc).__name__}: {exc}") from None
        return ()

    def close(self) -> None:
        if not self._loop.is_closed():
            self._loop.run_until_complete(self._drop())
            self._loop.close()
