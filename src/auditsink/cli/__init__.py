"""The ``auditsink`` command: a thin click layer over the Python API (auditsink/service.py).

Each area registers its commands on :data:`main` (cli/group.py) from its own module below,
imported here so that ``auditsink --help`` lists them all.
"""

from __future__ import annotations

from auditsink.cli import db, doctor, outputs, policy, query, rbac, rules, serve, setup, worker  # noqa: F401
from auditsink.cli.group import main

__all__ = ["main"]
