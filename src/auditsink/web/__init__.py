"""The web UI: server-rendered pages on the read listener, each with a ``.json`` twin.

Every page is one view function returning a dict; ``/ui/x`` renders it with a Jinja2 template
and ``/ui/x.json`` returns the same dict, so the UI and the API cannot drift (docs/ui.md).
"""

from __future__ import annotations

from auditsink.web.app import WebUI

__all__ = ["WebUI"]
