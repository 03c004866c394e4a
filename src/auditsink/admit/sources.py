"""Events for the simulator and the suggester, read from files (the store comes later).

Accepts what ``model.iter_file_bodies`` + ``decode_body`` accept: audit logs, EventList files,
one webhook body per line (a capture of POSTs), JSON arrays, .gz.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from auditsink.model import BadItem, Item, decode_body, iter_file_bodies


def iter_file_items(paths: Iterable[str], bad: list[BadItem] | None = None) -> Iterator[Item]:
    """Every decodable event in ``paths``, in file order; undecodable ones go to ``bad``."""
    for path in paths:
        for body in iter_file_bodies(path):
            good, errors = decode_body(body)
            if bad is not None:
                bad.extend(errors)
            yield from good
