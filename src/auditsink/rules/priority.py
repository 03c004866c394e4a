"""Rule priorities moved to :mod:`auditsink.priority` (the store and the read API use them too,
and sit below the rules); this name stays for the modules that still import it from here."""

from auditsink.priority import PRIORITIES, RANK, at_least, parse_priority

__all__ = ["PRIORITIES", "RANK", "at_least", "parse_priority"]
