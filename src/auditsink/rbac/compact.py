"""Permission atoms to the fewest PolicyRules that grant exactly them, in a stable order.

An atom is one verb on one resource (or subresource) of one API group, for one name or for
any name (name ""), or one verb on one non-resource URL. audit2rbac breaks rules down and
compacts them the same way (``compactRules``: merge names, then resources); here every merge
groups atoms that agree on everything else, so the rules grant the atoms and nothing more.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import NamedTuple

from auditsink.rbac.authorize import Rule


class Atom(NamedTuple):
    """One permission: ``verb`` on ``api_group``/``resource`` (``name`` "" is any name)."""

    api_group: str
    resource: str
    name: str
    verb: str


class UrlAtom(NamedTuple):
    """One permission on a non-resource URL."""

    path: str
    verb: str


def without_covered(atoms: Iterable[Atom]) -> set[Atom]:
    """Drop named atoms that the same verb on any name already grants."""
    atoms = set(atoms)
    unnamed = {(a.api_group, a.resource, a.verb) for a in atoms if not a.name}
    return {a for a in atoms if not a.name or (a.api_group, a.resource, a.verb) not in unnamed}


def resource_rules(atoms: Iterable[Atom]) -> list[Rule]:
    """The rules for resource atoms: one API group each, verbs and names sorted.

    >>> [rule] = resource_rules([Atom("", "pods", "", "get"), Atom("", "pods", "", "list"),
    ...     Atom("", "configmaps", "", "get"), Atom("", "configmaps", "", "list"),
    ...     Atom("", "pods", "web", "get")])
    >>> rule.verbs, rule.resources, rule.resource_names
    (('get', 'list'), ('configmaps', 'pods'), ())
    """
    # Which verbs each (group, resource, name) has...
    verbs: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for atom in without_covered(atoms):
        verbs[(atom.api_group, atom.resource, atom.name)].add(atom.verb)
    # ...then the names that share a verb set (any-name stays on its own)...
    names: dict[tuple[str, str, tuple[str, ...], bool], set[str]] = defaultdict(set)
    for (group, resource, name), verb_set in verbs.items():
        names[(group, resource, tuple(sorted(verb_set)), not name)].add(name)
    # ...then the resources that share verbs and names.
    resources: dict[tuple[str, tuple[str, ...], tuple[str, ...]], set[str]] = defaultdict(set)
    for (group, resource, verb_list, any_name), name_set in names.items():
        resources[(group, verb_list, () if any_name else tuple(sorted(name_set)))].add(resource)
    rules = [Rule(verb_list, (group,), tuple(sorted(resource_set)), name_list)
             for (group, verb_list, name_list), resource_set in resources.items()]
    return sorted(rules, key=lambda r: (r.api_groups, r.resources, r.resource_names, r.verbs))


def url_rules(atoms: Iterable[UrlAtom]) -> list[Rule]:
    """The rules for non-resource URL atoms: URLs grouped by their verbs.

    >>> [rule] = url_rules([UrlAtom("/metrics", "get"), UrlAtom("/logs", "get")])
    >>> rule.verbs, rule.non_resource_urls
    (('get',), ('/logs', '/metrics'))
    """
    verbs: dict[str, set[str]] = defaultdict(set)
    for atom in atoms:
        verbs[atom.path].add(atom.verb)
    urls: dict[tuple[str, ...], set[str]] = defaultdict(set)
    for path, verb_set in verbs.items():
        urls[tuple(sorted(verb_set))].add(path)
    rules = [Rule(verb_list, non_resource_urls=tuple(sorted(paths)))
             for verb_list, paths in urls.items()]
    return sorted(rules, key=lambda r: (r.non_resource_urls, r.verbs))
