"""Falco condition syntax: a cursor lexer and a recursive-descent parser producing a small AST.

Grammar (libsinsp ``filter/parser``; precedence ``not`` > ``and`` > ``or``)::

    expr    := and ('or' and)*
    and     := not ('and' not)*
    not     := ('not')* (check | 'not(' expr ')')
    check   := '(' expr ')' | field op | identifier          (identifier = macro)
    field   := name('.'name)+ ('[' arg ']')?
    op      := 'exists' | cmp value | listop ('(' values ')' | identifier)

Bare values are runs of anything but blanks, ``()``, quotes, ``=`` and ``,``; quoted values
use ``"`` or ``'`` with backslash escapes. Every node keeps the offset where it starts so that
errors can point into the condition text.
"""

from __future__ import annotations

import re

import msgspec

UNARY_OPS = ("exists",)
NUM_OPS = ("<=", "<", ">=", ">")
# Operators spelled as words must be followed by a blank (as in libsinsp).
STR_OPS = (
    "==",
    "=",
    "!=",
    "glob ",
    "iglob ",
    "contains ",
    "icontains ",
    "bcontains ",
    "startswith ",
    "bstartswith ",
    "endswith ",
    "regex ",
)
LIST_OPS = ("intersects", "in", "pmatch")
ALL_OPS = UNARY_OPS + NUM_OPS + tuple(op.strip() for op in STR_OPS) + LIST_OPS

_FIELD = re.compile(r"[a-zA-Z]+[a-zA-Z0-9_]*(\.[a-zA-Z]+[a-zA-Z0-9_]*)+")
_IDENT = re.compile(r"[a-zA-Z]+[a-zA-Z0-9_]*")
_ARG_BARE = re.compile(r"[^\]\[\"'\s]+")
_BARE = re.compile(r"[^()\"'\s=,]+")
_NOT = re.compile(r"not\s+")
_BLANK = re.compile(r"\s*")
_TRANSFORMERS = ("tolower(", "toupper(", "b64(", "basename(", "len(", "join(", "val(")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "\\": "\\", '"': '"', "'": "'"}


class ConditionError(ValueError):
    """A syntax or compile error at ``pos`` (an offset into the condition text)."""

    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos


class And(msgspec.Struct, frozen=True):
    children: tuple[Node, ...]
    pos: int = 0


class Or(msgspec.Struct, frozen=True):
    children: tuple[Node, ...]
    pos: int = 0


class Not(msgspec.Struct, frozen=True):
    child: Node
    pos: int = 0


class Ident(msgspec.Struct, frozen=True):
    """A macro reference (or, after a list operator, a list reference)."""

    name: str
    pos: int = 0


class Value(msgspec.Struct, frozen=True):
    """A literal; ``bare`` values may name a list when they appear inside a list."""

    text: str
    bare: bool = True


class ListValue(msgspec.Struct, frozen=True):
    items: tuple[Value, ...]


class Check(msgspec.Struct, frozen=True):
    """``field[arg] op value``; ``value`` is None for ``exists``, a ListValue or Ident for
    list operators (before list expansion), a Value otherwise."""

    field: str
    arg: str | None
    op: str
    value: Value | ListValue | Ident | None
    pos: int = 0


Node = And | Or | Not | Ident | Check


def parse(text: str) -> Node:
    """Parse a condition into an AST; raises :class:`ConditionError` with the offset.

    >>> node = parse("ka.verb=get and not kevt")
    >>> node.children[0].op, node.children[1]
    ('=', Not(child=Ident(name='kevt', pos=20), pos=16))
    """
    parser = _Parser(text)
    if not text.strip():
        raise ConditionError("condition is empty", 0)
    node = parser.parse_or()
    parser.blank()
    if parser.pos != len(text):
        raise ConditionError(
            f"unexpected token {parser.peek_word()!r}, expecting 'and', 'or' or the end", parser.pos
        )
    return node


def parse_field(text: str) -> tuple[str, str | None]:
    """Split ``name[arg]`` as the condition lexer would.

    >>> parse_field("ka.req.pod.volumes.hostpath[/etc*]")
    ('ka.req.pod.volumes.hostpath', '/etc*')
    """
    parser = _Parser(text)
    name, arg = parser.field()
    if parser.pos != len(text):
        raise ConditionError(f"not a field name: {text!r}", parser.pos)
    return name, arg


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.depth = 0

    # -- lexing helpers -------------------------------------------------------------------
    def blank(self) -> bool:
        end = _BLANK.match(self.text, self.pos).end()  # type: ignore[union-attr]
        found = end > self.pos
        self.pos = end
        return found

    def literal(self, word: str) -> bool:
        if self.text.startswith(word, self.pos):
            self.pos += len(word)
            return True
        return False

    def regex(self, rgx: re.Pattern[str]) -> str | None:
        match = rgx.match(self.text, self.pos)
        if match is None:
            return None
        self.pos = match.end()
        return match.group(0)

    def peek_word(self) -> str:
        match = re.compile(r"\S{1,20}").match(self.text, self.pos)
        return match.group(0) if match else ""

    def quoted(self) -> str | None:
        if self.pos >= len(self.text) or self.text[self.pos] not in "\"'":
            return None
        quote = self.text[self.pos]
        start = self.pos
        out: list[str] = []
        i = self.pos + 1
        while i < len(self.text):
            c = self.text[i]
            if c == "\\" and i + 1 < len(self.text):
                out.append(_ESCAPES.get(self.text[i + 1], "\\" + self.text[i + 1]))
                i += 2
                continue
            if c == quote:
                self.pos = i + 1
                return "".join(out)
            out.append(c)
            i += 1
        raise ConditionError("unterminated quoted string", start)

    def enter(self) -> None:
        self.depth += 1
        if self.depth > 100:
            raise ConditionError("condition nested too deeply (limit 100)", self.pos)

    # -- grammar --------------------------------------------------------------------------
    def parse_or(self) -> Node:
        self.enter()
        self.blank()
        start = self.pos
        children = [self.parse_and()]
        self.blank()
        while self.keyword("or"):
            children.append(self.parse_and())
            self.blank()
        self.depth -= 1
        return children[0] if len(children) == 1 else Or(tuple(children), start)

    def parse_and(self) -> Node:
        self.blank()
        start = self.pos
        children = [self.parse_not()]
        self.blank()
        while self.keyword("and"):
            children.append(self.parse_not())
            self.blank()
        return children[0] if len(children) == 1 else And(tuple(children), start)

    def keyword(self, word: str) -> bool:
        """``and``/``or`` followed by a blank or ``(`` (which is left for the operand)."""
        if not self.text.startswith(word, self.pos):
            return False
        after = self.text[self.pos + len(word) : self.pos + len(word) + 1]
        if after == "(" or after.isspace():
            self.pos += len(word)
            self.blank()
            return True
        if after == "":
            raise ConditionError(f"expected an operand after '{word}'", self.pos + len(word))
        return False

    def parse_not(self) -> Node:
        self.blank()
        start = self.pos
        negate = False
        while self.regex(_NOT) is not None:
            negate = not negate
        if self.literal("not("):
            negate = not negate
            child = self.embedded()
        else:
            child = self.check()
        return Not(child, start) if negate else child

    def embedded(self) -> Node:
        node = self.parse_or()
        self.blank()
        if not self.literal(")"):
            raise ConditionError("expected ')'", self.pos)
        return node

    def check(self) -> Node:
        self.blank()
        start = self.pos
        if self.literal("("):
            return self.embedded()
        for name in _TRANSFORMERS:
            if self.text.startswith(name, self.pos):
                raise ConditionError(f"field transformer '{name[:-1]}' is not supported", start)
        field = self.regex(_FIELD)
        if field is not None:
            self.pos = start
            name, arg = self.field()
            return self.operator(name, arg, start)
        ident = self.regex(_IDENT)
        if ident is not None:
            return Ident(ident, start)
        if self.pos >= len(self.text):
            raise ConditionError("unexpected end of condition", start)
        raise ConditionError(
            f"expected '(', a field check or a macro name, got {self.peek_word()!r}", start
        )

    def field(self) -> tuple[str, str | None]:
        name = self.regex(_FIELD)
        if name is None:
            raise ConditionError("expected a field name", self.pos)
        arg = None
        if self.literal("["):
            arg = self.quoted()
            if arg is None:
                arg = self.regex(_ARG_BARE)
            if arg is None:
                raise ConditionError("expected a field argument", self.pos)
            if not self.literal("]"):
                raise ConditionError("expected ']'", self.pos)
        return name, arg

    def operator(self, name: str, arg: str | None, start: int) -> Check:
        self.blank()
        op_pos = self.pos
        for op in UNARY_OPS:
            if self.literal(op):
                return Check(name, arg, op, None, start)
        for op in NUM_OPS:
            if self.literal(op):
                return Check(name, arg, op, self.value(), start)
        for op in STR_OPS:
            word = op.strip()
            if self.literal(word):
                if op.endswith(" ") and not self.blank():
                    self.pos = op_pos
                    continue
                return Check(name, arg, "=" if word == "==" else word, self.value(), start)
        for op in LIST_OPS:
            if self.literal(op):
                return Check(name, arg, op, self.list_value(), start)
        raise ConditionError(
            f"expected an operator after '{name}': one of {', '.join(ALL_OPS)}", op_pos
        )

    def value(self) -> Value:
        self.blank()
        text = self.quoted()
        if text is not None:
            return Value(text, bare=False)
        bare = self.regex(_BARE)
        if bare is None:
            raise ConditionError("expected a value", self.pos)
        return Value(bare)

    def list_value(self) -> ListValue | Ident:
        self.blank()
        start = self.pos
        if self.literal("("):
            items: list[Value] = []
            self.blank()
            if not self.literal(")"):
                items.append(self.value())
                self.blank()
                while self.literal(","):
                    items.append(self.value())
                    self.blank()
                if not self.literal(")"):
                    raise ConditionError("expected ',' or ')' in list", self.pos)
            return ListValue(tuple(items))
        ident = self.regex(_IDENT)
        if ident is None:
            raise ConditionError("expected a list '(...)' or a list name", start)
        return Ident(ident, start)
