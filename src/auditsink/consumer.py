"""Run a store consumer (the rules, a notifier) in one process at a time.

Every replica on a shared store starts every consumer; ``Store.claim_consumer`` lets one of
them run it while the others stand by, and one of those takes over within ``standby``
seconds when the holder stops, dies or loses its database connection. Cursor commits are
compare-and-set (``CursorMoved``), so even at a takeover, when two processes may briefly both
believe they hold the consumer, nothing is stored twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from auditsink.store.base import CursorMoved, Store

log = logging.getLogger("auditsink.consumer")


class Follower:
    """Calls ``step`` while this process holds consumer ``name``; ``resume`` re-reads the
    durable cursor whenever the consumer is (re)gained, since another process may have moved
    it meanwhile."""

    def __init__(self, store: Store, name: str, step: Callable[[], int],
                 resume: Callable[[], None], poll: float, standby: float = 2.0) -> None:
        self.store = store
        self.name = name
        self.step = step
        self.resume = resume
        self.poll = poll
        self.standby = standby
        self.active = False

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                if not self.store.claim_consumer(self.name):
                    if self.active:
                        log.warning("consumer %r: another process holds it now; standing by",
                                    self.name)
                    self.active = False
                    stop.wait(self.standby)
                    continue
                if not self.active:
                    self.resume()
                    self.active = True
                    log.info("consumer %r: running in this process", self.name)
                if self.step():
                    continue
            except CursorMoved as exc:
                log.warning("consumer %r: %s; re-reading the cursor", self.name, exc)
                self.resume()
                continue
            except Exception:
                log.exception("consumer %r failed; retrying", self.name)
            stop.wait(self.poll)
