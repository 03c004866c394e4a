"""The read listener (``--api-listen``): the JSON API and the web UI side by side, behind one
authentication, so the UI is exactly as protected as the API.

It listens apart from the ingest port, so that the port facing the API server never serves
data. Only GET and HEAD are answered: nothing on this port changes the store.
"""

from __future__ import annotations

import hmac

from auditsink.asgi import Receive, Scope, Send, header, send_json
from auditsink.query.api import ReadAPI
from auditsink.store.base import Store
from auditsink.web import WebUI


class ReadListener:
    """ASGI app of the read port; bearer-token protected when a token is configured."""

    def __init__(self, store: Store, token: str | None = None) -> None:
        self.store = store
        self.token = token.encode() if token else None
        self.api = ReadAPI(store)
        self.web = WebUI(store)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] not in ("GET", "HEAD"):
            await send_json(send, 405, {"error": "read-only API: use GET"})
            return
        if self.token is not None and not self._authorized(scope):
            await send_json(send, 401, {"error": "unauthorized"},
                            [(b"www-authenticate", b'Bearer realm="auditsink"')])
            return
        path: str = scope["path"]
        if self.web.handles(path):
            await self.web(dict(scope), send)
        else:
            await self.api(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        assert self.token is not None
        scheme, _, credential = header(scope, b"authorization").partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(credential.strip(), self.token)
