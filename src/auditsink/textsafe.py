"""Hostile text made safe to print: control characters escaped, error messages cut short.

Everything an event or a sender controls (user names, verbs, cluster names, a 20 MB ``kind``)
can reach a terminal, a log line or an HTTP answer. Two helpers, used at every such door:

- :func:`printable` escapes C0/C1 control characters, DEL and the Unicode bidirectional and
  line/paragraph separators, so nothing can move the cursor, recolour the terminal, forge a
  second line or reorder what is shown (CVE-2021-42574, "Trojan Source");
- :func:`cut` shortens a message to a few hundred characters, saying how much was cut.
"""

from __future__ import annotations

import re

# C0 controls (tab and newline too: one event is one line), DEL, C1 controls, the line and
# paragraph separators, and the bidi embeddings, overrides and isolates.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\u200e\u200f]")
MESSAGE_CHARS = 300


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every control character written as an escape.

    >>> printable("alice\\x1b[2J\\nfake line")
    'alice\\\\x1b[2J\\\\x0afake line'
    """
    if _UNSAFE.search(text) is None:  # the common case: nothing to do, no copy
        return text
    return _UNSAFE.sub(_escape, text)


def cut(message: str, limit: int = MESSAGE_CHARS) -> str:
    """``message`` shortened to about ``limit`` characters, control characters escaped.

    >>> cut("unsupported kind 'x" + "A" * 1000 + "'", 40)
    "unsupported kind 'xAAAAAAAAAAAAAAAAAAAAA... (980 more characters)"
    """
    if len(message) > limit:
        message = f"{message[:limit]}... ({len(message) - limit} more characters)"
    return printable(message)
