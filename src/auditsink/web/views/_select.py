"""The explorer's selection: form fields and query bar in, one Selector out, and back again.

The form is generated from :data:`auditsink.selector.FIELDS` and the query bar takes the
syntax of ``auditsink query 'user:alice -namespace:kube-system code:4xx'``; both parse into
the same Selector, and both are drawn from it, so they always agree. A URL may carry either
or both: ``?q=user:alice&verb=delete`` selects alice's deletes. Times typed in the bar
(``since:2h``) go to the time picker, which owns the range.
"""

from __future__ import annotations

from auditsink.selector import (
    BY_NAME,
    FIELDS,
    TIME_KEYS,
    Selector,
    SelectorError,
    from_pairs,
    parse_terms,
)
from auditsink.web.urls import spell, unspell
from auditsink.web.views._common import Query


def _bare(key: str) -> tuple[str, bool]:
    """``namespace!`` / ``-namespace`` -> ("namespace", excluded)."""
    negate = key.endswith("!") or key.startswith("-")
    return key.rstrip("!").lstrip("-"), negate


def selection(query: Query) -> tuple[Selector, dict[str, str]]:
    """The fields selected by the form and the bar (no times), and times typed in the bar.

    >>> sel, times = selection({"q": ["user:alice since:2h"], "namespace!": ["kube-system"]})
    >>> sel.describe(), times
    ('user:alice -namespace:kube-system', {'since': '2h'})
    """
    pairs: list[tuple[str, str]] = []
    times: dict[str, str] = {}
    for key, values in query.items():
        bare, negate = _bare(key)
        if bare in BY_NAME:
            pairs.extend((f"-{bare}" if negate else bare, unspell(v)) for v in values)
    for text in query.get("q", []):
        for key, value in parse_terms(text):
            bare, negate = _bare(key)
            if bare in TIME_KEYS:
                if negate:
                    raise SelectorError(f"{key}: a time cannot be negated")
                times[bare] = value
            else:
                pairs.append((key, value))
    unique = list(dict.fromkeys(pairs))  # a value given by the form and the bar counts once
    return from_pairs(unique), times


def pairs_of(selector: Selector) -> list[tuple[str, str]]:
    """The selector as query-string pairs (``FIELD``, ``FIELD!`` for NOT, ``""`` for empty)."""
    pairs = [(f.name, spell(v)) for f, values in selector.given() for v in values]
    if selector.exclude is not None:
        pairs += [(f.name + "!", spell(v)) for f, values in selector.exclude.given()
                  for v in values]
    return pairs


def bar_text(selector: Selector) -> str:
    """The query-bar text of a selector without its times.

    >>> bar_text(Selector(users=["alice"], exclude=Selector(namespaces=["kube-system"])))
    'user:alice -namespace:kube-system'
    """
    return selector.replace(since=None, until=None).describe()


def form_fields(selector: Selector) -> dict[str, dict[str, list[str]]]:
    """The form's values: for each field given, the values it must and must not have (the
    template draws every field of :data:`FIELDS`, with its help).

    >>> form_fields(Selector(users=["alice"], exclude=Selector(users=["bob"])))
    {'user': {'values': ['alice'], 'excluded': ['bob']}}
    """
    excluded = selector.exclude or Selector()
    found = {f.name: {"values": [spell(v) for v in selector.values(f)],
                      "excluded": [spell(v) for v in excluded.values(f)]} for f in FIELDS}
    return {name: given for name, given in found.items() if given["values"] or given["excluded"]}


def without(selector: Selector, name: str) -> Selector:
    """A copy with one field cleared on both sides (the header's cluster selector)."""
    spec = BY_NAME[name]
    copied = selector.replace(**{spec.attr: []})
    if copied.exclude is not None:
        copied.exclude = copied.exclude.replace(**{spec.attr: []})
    return copied
