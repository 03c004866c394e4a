"""The ``auditsink`` command: a thin click layer over the Python API.

Each area registers its commands on :data:`main` from its own module below, imported at the end
so that ``auditsink --help`` lists them all.
"""

from __future__ import annotations

import click

from auditsink import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "AUDITSINK"})
@click.version_option(__version__, prog_name="auditsink")
def main() -> None:
    """auditsink: receive, store, query and watch kube-apiserver audit events."""


# Command modules register themselves on ``main``; keep this list sorted.
from auditsink.cli import db  # noqa: E402,F401
from auditsink.cli import doctor  # noqa: E402,F401
from auditsink.cli import policy  # noqa: E402,F401
from auditsink.cli import query  # noqa: E402,F401
from auditsink.cli import rules  # noqa: E402,F401
from auditsink.cli import serve  # noqa: E402,F401
from auditsink.cli import setup  # noqa: E402,F401
from auditsink.cli import worker  # noqa: E402,F401
