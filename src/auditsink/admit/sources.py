"""Events for the simulator and the suggester, read from files (the store comes later).

Accepts what ``model.iter_file_bodies`` + ``decode_body`` accept: audit logs, EventList files,
one webhook body per line (a capture of POSTs), JSON arrays, .gz.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from auditsink.model import BadItem, BodyError, Item, decode_body, iter_file_bodies, snippet


def iter_file_items(paths: Iterable[str], bad: list[BadItem] | None = None) -> Iterator[Item]:
    """Every decodable event in ``paths``, in file order; undecodable ones go to ``bad``.

    A part of a file that is not audit events at all (a file that is not JSON, a log copied
    mid-line, an unreadable gzip) goes to ``bad`` too, its error naming the file.
    """
    for path in paths:
        try:
            for body in iter_file_bodies(path):
                if not body.strip():
                    continue  # an empty file
                try:
                    good, errors = decode_body(body)
                except BodyError as exc:
                    good, errors = [], [BadItem(index=0, error=f"{path}: {exc}",
                                                snippet=snippet(body))]
                if bad is not None:
                    bad.extend(errors)
                yield from good
        except (OSError, EOFError) as exc:
            if bad is not None:
                bad.append(BadItem(index=0, error=f"{path}: cannot read it: {exc}", snippet=""))
