"""The differences between SQLite's and PostgreSQL's SQL that the shared read layer needs.

Everything else in store/sql/ is written once, in the SQL both understand (double-quoted
identifiers, ``IN (...)`` lists, ``+column`` to steer the planner away from an index).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Dialect:
    """One SQL dialect: its parameter mark and the few expressions that differ."""

    name: str
    mark: str
    # The byte offset of an event inside its decompressed frame (OFFSET is reserved in PG).
    start_column: str
    # ``value`` contains the parameter / starts with it (on the strings table).
    contains: str
    starts_with: str
    # ``value`` looks like an IP address (digits, hex letters, dots and colons only).
    looks_like_ip: str

    def marks(self, count: int) -> str:
        """``?, ?, ?`` for three parameters."""
        return ", ".join([self.mark] * count)


SQLITE = Dialect(
    name="sqlite", mark="?", start_column="offset",
    contains="instr(value, ?) > 0",
    # A range on strings' UNIQUE index: the strings a prefix starts are contiguous in it.
    starts_with="(value >= ? AND value < ?)",
    looks_like_ip="(value GLOB '*[.:]*' AND value NOT GLOB '*[^0-9A-Fa-f.:]*')",
)
POSTGRES = Dialect(
    name="postgres", mark="%s", start_column="start",
    contains="strpos(value, %s) > 0",
    # starts_with, not a range: a range is only a prefix search in the C collation.
    starts_with="starts_with(value, %s)",
    looks_like_ip="value ~ '^[0-9A-Fa-f.:]+$' AND value ~ '[.:]'",
)


def prefix_params(dialect: Dialect, prefix: str) -> list[object]:
    """The parameters of ``dialect.starts_with`` for one prefix.

    >>> prefix_params(SQLITE, "/api/v1/")
    ['/api/v1/', '/api/v10']
    """
    if dialect is SQLITE:
        # Every string starting with the prefix sorts before the prefix with its last
        # character incremented (SQLite compares text bytewise, and UTF-8 keeps code point
        # order).
        if not prefix:
            return ["", "\U0010ffff" * 2]
        return [prefix, prefix[:-1] + chr(min(ord(prefix[-1]) + 1, 0x10FFFF))]
    return [prefix]
