"""Forwarding as a store consumer: one :class:`Forwarder` per output, each with its own
durable cursor, so a slow or dead destination delays only itself.

Per page of committed events, top to bottom: decode, keep what the output's filter selects,
apply the output's own audit policy (a level downgrade for this destination only), encode in
the output's format, render one payload, send it with retries and backoff; after
``max_attempts`` failures the batch becomes a dead letter (its range of the log, replayable)
and the cursor moves on. The cursor moves only after the destination took the batch, in the
same transaction as any dead letter: delivery is at least once (docs/forward.md, "Delivery").
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from auditsink.consumer import Attempts, Backoff, Consumer, ConsumerLoop, Progress, deliver
from auditsink.forward.base import (
    Doc,
    Output,
    OutputConfig,
    OutputConfigError,
    Record,
    Rejection,
    build_output,
    encoder,
)
from auditsink.model import Item, decode_item
from auditsink.store.base import DeadLetter, Selector, Store, StoredEvent

log = logging.getLogger("auditsink.forward")
STATUS_STATE = "output-status:"  # + output name: JSON of its current failure, {} when none

Predicate = Callable[[Any, str], bool]


def compile_filter(config: OutputConfig) -> Predicate | None:
    """The output's filter (``match: [verb=delete, ...]``, the ``--match`` vocabulary),
    compiled once; None keeps everything."""
    if not config.match:
        return None
    from auditsink.selector import SelectorError, compile_predicate, parse_match

    try:
        return compile_predicate(parse_match(config.match))
    except SelectorError as exc:
        raise OutputConfigError(f"output {config.name!r}: match: {exc}") from None


def compile_policy(config: OutputConfig) -> Callable[[Item], Item | None] | None:
    """The output's own audit policy (levels downgraded for this destination only)."""
    if not config.policy:
        return None
    from auditsink.admit.policy import apply_policy, load_policy

    try:
        policy = load_policy(config.policy)
    except (OSError, ValueError) as exc:
        raise OutputConfigError(f"output {config.name!r}: policy: {exc}") from None
    return lambda item: apply_policy(policy, item)


@dataclass
class ForwardStats:
    """What one output did since this process started (its metrics)."""

    delivered: int = 0        # events the destination took
    filtered: int = 0         # events the filter or policy left out
    failed: int = 0           # attempts that failed
    retried: int = 0          # batches that needed more than one attempt
    dead: int = 0             # events given up on (dead letters)
    rejected: int = 0         # events the destination refused for good (per-item errors)
    batches: int = 0
    caught_up: float = field(default_factory=time.monotonic)


class Forwarder(Consumer):
    """Sends committed events to one output, in log order, from one replica at a time."""

    poll = 0.1

    def __init__(self, store: Store, config: OutputConfig, output: Output | None = None) -> None:
        self.store = store
        self.config = config
        self.name = config.cursor
        self.batch = config.batch_events
        self.linger = config.batch_seconds
        self.output = output if output is not None else build_output(config)
        self.encode = encoder(config.format)
        self.keep = compile_filter(config)
        self.policy = compile_policy(config)
        self.backoff = Backoff(config.backoff_seconds, config.backoff_max_seconds)
        self.stats = ForwardStats()
        self._status: dict[str, Any] | None = None
        self._status_saved = 0.0
        self.loop = ConsumerLoop(store, self)

    # -- the consumer --------------------------------------------------------------------

    def fetch(self, after: int, limit: int) -> Sequence[StoredEvent]:
        return self.store.query(Selector(), limit=limit, after_id=after, newest_first=False)

    def newest(self) -> int:
        return getattr(self.store, "last_id", lambda: self.loop.position)()

    def resumed(self, position: int) -> None:
        # A cursor row from the start, so `auditsink outputs` lists an output that has not
        # delivered anything yet (one failing from its first batch, above all).
        if position == 0 and self.name not in self.store.cursors():
            self.store.commit_consumed(self.name, 0, [], expected=0)

    def idle(self, stop: threading.Event) -> Progress | None:
        self.stats.caught_up = time.monotonic()
        return None

    def process(self, entries: Sequence[StoredEvent], stop: threading.Event) -> Progress | None:
        docs = self.encode_all(entries)
        last = entries[-1].id
        if not docs:
            return Progress(last)
        outcome, rejected = self.send_docs(docs, stop)
        if outcome is None:
            return None  # stopping: the batch is sent again after the restart
        dead = [DeadLetter(self.name, r.position, r.position, 1, outcome.tries, r.error)
                for r in rejected]
        if not outcome.delivered:
            log.error("output %r: giving up on events %d..%d after %d attempts (%s); kept as a "
                      "dead letter: `auditsink outputs replay %s --dead-letters` re-sends it",
                      self.config.name, entries[0].id, last, outcome.tries, outcome.error,
                      self.config.name)
            self.stats.dead += len(docs)
            dead = [DeadLetter(self.name, entries[0].id, last, len(docs), outcome.tries,
                               outcome.error)]
        return Progress(last, dead_letters=dead)

    # -- the stages, shared with replays -------------------------------------------------

    def encode_all(self, entries: Iterable[StoredEvent]) -> list[Doc]:
        """Decode, filter, apply the policy and encode; what is left out is counted."""
        docs: list[Doc] = []
        keep, policy, encode = self.keep, self.policy, self.encode
        for stored in entries:
            try:
                event = decode_item(stored.raw)
            except Exception:  # noqa: BLE001 - stored events decoded once already; never stop on one
                log.exception("output %r: cannot decode stored event %d", self.config.name,
                              stored.id)
                continue
            if keep is not None and not keep(event, stored.cluster):
                self.stats.filtered += 1
                continue
            raw = stored.raw
            if policy is not None:
                admitted = policy(Item(event=event, raw=raw))
                if admitted is None:
                    self.stats.filtered += 1
                    continue
                event, raw = admitted.event, admitted.raw
            record = Record(stored.id, stored.cluster, event, raw)
            docs.append(Doc(record, encode(record)))
        return docs

    def send_docs(self, docs: Sequence[Doc], stop: threading.Event,
                  max_attempts: int | None = None) -> tuple[Attempts | None, list[Rejection]]:
        """Render and send one batch with retries; the destination may take part of it and
        have the rest retried (``DeliveryError.remaining``) or refuse items for good."""
        payload = [self.output.render(docs)]
        rejected: list[Rejection] = []
        name = self.config.name

        def attempt() -> None:
            from auditsink.forward.base import DeliveryError

            try:
                rejected.extend(self.output.send(payload[0]))
            except DeliveryError as exc:
                if exc.remaining is not None:
                    payload[0] = exc.remaining
                raise

        def failed(tries: int, exc: Exception, delay: float) -> None:
            self.stats.failed += 1
            if tries == 1:
                self.stats.retried += 1
            log.warning("output %r: delivery failed (%s); attempt %d, retrying in %.1fs",
                        name, exc, tries, delay)
            self._note_failure(str(exc))

        attempts = self.config.max_attempts if max_attempts is None else max_attempts
        outcome = deliver(attempt, stop, self.backoff, attempts, on_failure=failed)
        if outcome is not None:
            if outcome.delivered:
                self.stats.delivered += len(docs) - len(rejected)
                self.stats.batches += 1
                self._note_recovery()
            else:
                self.stats.failed += 1
                self._note_failure(outcome.error, keep_now=True)
            self.stats.rejected += len(rejected)
        return outcome, rejected

    # -- what `auditsink outputs` shows of a failing output ---------------------------------

    def _note_failure(self, error: str, keep_now: bool = False) -> None:
        """Keep the failure beside the log (at most every 5 s), so `auditsink outputs` in
        another process can say this output is failing, since when, and why."""
        now = time.time()
        status = self._status
        if status is None:
            status = self._status = {"failing_since": now, "failed_attempts": 0}
        status["failed_attempts"] += 1
        status["last_error"] = error[:500]
        if keep_now or now - self._status_saved >= 5 or status["failed_attempts"] == 1:
            self._save_status(status)

    def _note_recovery(self) -> None:
        if self._status is not None:
            self._status = None
            self._save_status({})

    def _save_status(self, status: dict[str, Any]) -> None:
        self._status_saved = time.time()
        try:
            self.store.save_state(STATUS_STATE + self.config.name, json.dumps(status).encode())
        except Exception as exc:  # noqa: BLE001 - a status line must not stop delivery
            log.debug("output %r: cannot keep its status: %s", self.config.name, exc)

    # -- running -------------------------------------------------------------------------

    def step(self, stop: threading.Event | None = None) -> int:
        """Forward the next page (for tests and replays); returns how many events were read."""
        return self.loop.step(stop)

    def run(self, stop: threading.Event) -> None:
        """Forward until ``stop`` is set, in one replica at a time (consumer.py)."""
        try:
            self.loop.run(stop)
        finally:
            self.output.close()

    def lag(self) -> int:
        """Committed events not yet past this output's cursor."""
        return self.loop.lag()

    def lag_seconds(self) -> float:
        """Seconds since this output was last caught up (0 while it is)."""
        if self.loop.lag() == 0:
            return 0.0
        return time.monotonic() - self.stats.caught_up
