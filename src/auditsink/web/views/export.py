"""Export of the explorer's whole result, streamed: audit-log lines (JSONL) or CSV.

The file is the read API's and the CLI's (``auditsink.query.export``): not capped at a page,
read from the store a page at a time in time order, oldest first (the order of an audit log),
each chunk sent as soon as it is read. JSONL lines are what ``--audit-log-path`` writes, so
``auditsink import`` takes them back (give ``--cluster`` per cluster: an audit line does not
name its cluster, which is why the CSV has a column for it).
"""

from __future__ import annotations

from collections.abc import Iterator

from auditsink.query.export import FORMATS
from auditsink.query.export import export as export_file
from auditsink.store.base import Store
from auditsink.web.views._common import Query
from auditsink.web.views._range import within
from auditsink.web.views.events import parse


def export(store: Store, query: Query, fmt: str) -> tuple[str, Iterator[bytes]]:
    """The content type and the chunks of the export of the explorer's result."""
    search = parse(store, query)
    chunks = export_file(store, within(search.selector, search.span), fmt, oldest_first=True,
                         requests_only=search.requests_only)
    return FORMATS[fmt], chunks
