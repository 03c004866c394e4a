"""Alert and rule priorities: Falco's eight severities, most severe first.

A vocabulary shared by the rules, the store (alerts), the read API and the notifiers."""

from __future__ import annotations

PRIORITIES = ("EMERGENCY", "ALERT", "CRITICAL", "ERROR", "WARNING", "NOTICE", "INFO", "DEBUG")
RANK = {name: rank for rank, name in enumerate(PRIORITIES)}
_ALIASES = {"INFORMATIONAL": "INFO", "WARN": "WARNING", "ERR": "ERROR", "CRIT": "CRITICAL"}


def parse_priority(text: object) -> str:
    """The canonical (upper-case) name of a priority, case-insensitive; raises ValueError.

    >>> parse_priority("Informational"), parse_priority("warning")
    ('INFO', 'WARNING')
    """
    name = str(text).strip().upper()
    name = _ALIASES.get(name, name)
    if name not in RANK:
        raise ValueError(
            f"unknown priority {text!r}: expected one of {', '.join(PRIORITIES)} (any case)"
        )
    return name


def at_least(priority: str, minimum: str) -> bool:
    """Whether ``priority`` is as severe as ``minimum`` or more.

    >>> at_least("ERROR", "WARNING"), at_least("INFO", "NOTICE")
    (True, False)
    """
    return RANK[priority] <= RANK[minimum]
