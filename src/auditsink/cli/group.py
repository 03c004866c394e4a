"""The ``auditsink`` click group itself, which every command module registers on.

It lives apart from ``cli/__init__.py`` (which imports the command modules) so that the command
modules import this and never their own package: no import cycle.
"""

from __future__ import annotations

import click

from auditsink import __version__


# auto_envvar_prefix gives the options that are not settings (query --limit) the names
# AUDITSINK_<COMMAND>_<OPTION> they always had; settings have AUDITSINK_<NAME> (settings.py).
@click.group(context_settings={"help_option_names": ["-h", "--help"],
                               "auto_envvar_prefix": "AUDITSINK"})
@click.version_option(__version__, prog_name="auditsink")
def main() -> None:
    """auditsink: receive, store, query and watch kube-apiserver audit events."""
