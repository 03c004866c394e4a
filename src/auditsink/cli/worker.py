"""``auditsink worker``: the consumer side of the NATS bus (``serve --bus`` is the producer)."""

from __future__ import annotations

from typing import Any

from auditsink import service
from auditsink.cli.group import main
from auditsink.cli.options import call_service, settings_from, settings_options


@main.command("worker")
@settings_options("worker")
def worker_command(**kwargs: Any) -> None:
    """Store the batches `auditsink serve --bus` published; run as many as you need.

    \b
      auditsink worker --bus nats://nats-0:4222,nats://nats-1:4222 --store postgresql://...
    """
    call_service(service.run_worker, settings_from(kwargs, "worker"))
