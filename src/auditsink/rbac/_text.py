"""Text from events, made safe to print."""

from __future__ import annotations

import re

# Event fields reach printed lines and YAML comments (a URL of a skipped request): a newline
# there would end a comment and start YAML that kubectl applies, an escape sequence would
# drive the terminal.
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")


def one_line(text: str) -> str:
    r"""``text`` with control characters shown as escapes.

    >>> one_line("get /a\nkind: Secret")
    'get /a\\x0akind: Secret'
    """
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
