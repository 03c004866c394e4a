"""Suggestions as the YAML ``kubectl apply -f -`` takes: ``---``-separated documents, each
identity's behind a comment header that says what it covers. The same input always gives the
same bytes (no clock, sorted everything)."""

from __future__ import annotations

from collections.abc import Sequence

import yaml

from auditsink.rbac._text import one_line
from auditsink.rbac.suggest import VERB_EXPANSIONS, Suggestion

MAX_LISTED = 10
# libyaml's emitter when PyYAML has it (10x faster, same output for these plain documents).
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def header(suggestion: Suggestion, selection: str = "") -> list[str]:
    """The comment lines in front of one identity's objects."""
    observed, options = suggestion.observed, suggestion.options
    clusters = sorted(c for c in observed.clusters if c)
    lines = [f"RBAC suggested by auditsink for {suggestion.identity.label()}"
             + (f" in cluster {', '.join(clusters)}" if clusters else "")]
    if selection:
        lines.append(f"selection: {selection}")
    if not observed.calls:
        lines.append("no requests in the selection: nothing to grant")
        return lines
    denied = observed.denied_calls
    lines.append(f"from {_count(len(observed.calls), 'request')} in "
                 f"{_count(observed.events, 'event')}, {observed.first} .. {observed.last}")
    if denied:
        lines.append(f"{_count(denied, 'request')} denied, "
                     + ("left out (--only-allowed)" if options.only_allowed
                        else "included: the rules below grant them"))
    if suggestion.already_allowed:
        lines.append(f"{_count(len(suggestion.already_allowed), 'distinct request')} need no "
                     "rule: every authenticated identity holds them (discovery, version, health)")
    if suggestion.skipped:
        listed = ", ".join(str(r) for r in suggestion.skipped[:MAX_LISTED])
        lines.append(f"left out, because a rule would read their '*' as a wildcard: {listed}")
    if options.expand_verbs:
        expanded = " ".join(f"{verb}->{','.join(more)}" for verb, more in VERB_EXPANSIONS.items())
        lines.append(f"verbs expanded as clients need them: {expanded}")
    lines.append("names kept as used" if options.keep_names
                 else "names kept unless several (or none) were used for the same operation")
    widen = options.cluster_wide_after
    lines.append("namespaced permissions in a Role per namespace"
                 + (f", granted in every namespace when used in more than {widen}"
                    if widen is not None else ""))
    return lines


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def render(suggestions: Sequence[Suggestion], selection: str = "") -> str:
    """All suggestions as one YAML stream."""
    chunks: list[str] = []
    for suggestion in suggestions:
        comment = "".join(f"# {one_line(line)}\n" for line in header(suggestion, selection))
        docs = [yaml.dump(doc, Dumper=_DUMPER, sort_keys=False, default_flow_style=False,
                          width=1000) for doc in suggestion.objects()]
        chunks.append(comment + "---\n".join(docs))
    return "---\n".join(chunks)
