"""What the structured formats (OCSF, ECS) read from an event the same way."""

from __future__ import annotations

import ipaddress

from auditsink.model import Event

# Kubernetes verbs -> the HTTP method the API server saw (watch and list are GETs).
HTTP_METHODS = {"get": "GET", "list": "GET", "watch": "GET", "create": "POST", "update": "PUT",
                "patch": "PATCH", "delete": "DELETE", "deletecollection": "DELETE"}


def valid_ips(event: Event) -> list[str]:
    """``sourceIPs`` that are IP addresses (the list can carry X-Forwarded-For values)."""
    found = []
    for text in event.sourceIPs:
        try:
            found.append(str(ipaddress.ip_address(text.strip())))
        except ValueError:
            continue
    return found


def split_uri(uri: str) -> tuple[str, str]:
    """``/api/v1/pods?watch=1`` -> ("/api/v1/pods", "watch=1")."""
    path, _, query = uri.partition("?")
    return path, query
