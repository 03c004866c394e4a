"""Output templates: ``%field`` and ``%field[arg]`` substitution, compiled once per rule."""

from __future__ import annotations

import re
from typing import Any

from auditsink.rules.fields import FieldError, FieldRef, resolve

NA = "<NA>"
# A field name as the condition lexer reads it, optionally wrapped as %(name) or %name[arg].
_NAME = r"[a-zA-Z]+[a-zA-Z0-9_]*(?:\.[a-zA-Z]+[a-zA-Z0-9_]*)+"
_FIELD = re.compile(
    rf"%(?:\((?P<pname>{_NAME})(?:\[(?P<parg>[^\]]*)\])?\)"
    rf"|(?P<name>{_NAME})(?:\[(?P<arg>[^\]]*)\])?)"
)


class OutputError(ValueError):
    """An output template naming an unknown field; ``pos`` is the offset of its ``%``."""

    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos


def render_value(value: Any) -> str:
    """A field value as Falco prints it: lists as ``(a,b)``, missing as ``<NA>``.

    >>> render_value(["a", "b"]), render_value(None), render_value("x")
    ('(a,b)', '<NA>', 'x')
    """
    if value is None:
        return NA
    if type(value) is list:
        return "(" + ",".join(value) + ")"
    return str(value)


class Template:
    """A compiled output template; ``render(ctx)`` fills it from the event's cached fields.

    >>> from auditsink.rules.engine import EventContext
    >>> ctx = EventContext({"auditID": "a", "verb": "get"})
    >>> Template("verb=%ka.verb user=%ka.user.name").render(ctx)
    'verb=get user=<NA>'
    """

    def __init__(self, text: str) -> None:
        self.text = text.strip()
        self.parts: list[str | FieldRef] = []
        last = 0
        for match in _FIELD.finditer(self.text):
            name = match.group("name") or match.group("pname")
            arg = match.group("arg") if match.group("name") else match.group("parg")
            try:
                ref = resolve(name, arg)
            except FieldError as exc:
                raise OutputError(str(exc), match.start()) from None
            self.parts.append(self.text[last : match.start()])
            self.parts.append(ref)
            last = match.end()
        self.parts.append(self.text[last:])
        self.fields = [p for p in self.parts if isinstance(p, FieldRef)]

    def render(self, ctx: Any) -> str:
        """The template with every field replaced by its value in ``ctx``."""
        out: list[str] = []
        for part in self.parts:
            if type(part) is str:
                out.append(part)
            else:
                out.append(render_value(ctx.get(part)))
        return "".join(out)

    def values(self, ctx: Any) -> dict[str, str | list[str] | None]:
        """The template's fields and their values (Falco's ``output_fields``)."""
        return {ref.key: ctx.get(ref) for ref in self.fields}
