"""Every selector field answers the same through every surface, on both stores.

Real traffic in two clusters with impersonation (tests/data/kube-identity) is imported into a
SQLite file and a PostgreSQL database; then each field is asked through the CLI flags, the
CLI's query bar, the read API of a real ``auditsink serve`` (paging through its cursors), the
web UI's form fields and its query bar (the explorer's JSON twin, every stage, paged by its
older links) and ``import --match`` (the in-flight predicate), and every answer must be the set
of events the selector's Python predicate picks.
"""

from __future__ import annotations

import gzip
import json
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import ROOT

from auditsink.cli import main
from auditsink.model import decode_body
from auditsink.selector import BY_NAME, compile_predicate, from_pairs
from auditsink.web.urls import spell

DATA = ROOT / "tests" / "data" / "kube-identity"
CLUSTERS = ("cluster-a", "cluster-b")
# (field, value): one per field at least, values present in the traffic and absent from it.
CASES: list[tuple[str, str]] = [
    ("user", "mallory"), ("user", "admin"), ("authenticatedUser", "admin"),
    ("impersonatedUser", "mallory"), ("impersonatedUser", ""), ("group", "system:masters"),
    ("verb", "patch"), ("resource", "configmaps"), ("resource", "namespaces/*"),
    ("apiGroup", "rbac.authorization.k8s.io"), ("apiGroup", ""), ("namespace", "ops"),
    ("name", "settings"), ("stage", "ResponseComplete"), ("level", "RequestResponse"),
    ("code", "403"), ("code", "2xx"), ("cluster", "cluster-b"), ("sourceIP", "127.0.0.0/8"),
    ("sourceIP", "10.0.0.0/8"), ("userAgent", "kubectl"), ("decision", "forbid"),
    ("requestURI", "/api/v1/namespaces/ops/"), ("auditID", "no-such-request"),
]
NEGATED: list[tuple[str, str]] = [("namespace", "ops"), ("user", "admin"), ("code", "2xx")]


def _items() -> dict[str, list[Any]]:
    found = {}
    for cluster in CLUSTERS:
        items, bad = decode_body(gzip.decompress((DATA / f"{cluster}.log.gz").read_bytes()))
        assert not bad
        found[cluster] = items
    return found


def _expected(pairs: list[tuple[str, str]]) -> set[tuple[str, str, str]]:
    predicate = compile_predicate(from_pairs(pairs))
    return {(cluster, i.event.auditID, i.event.stage) for cluster, items in _items().items()
            for i in items if predicate is None or predicate(i.event, cluster)}


def _keys(docs: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(d["cluster"], d["event"]["auditID"], d["event"]["stage"]) for d in docs}


def _cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def logs(tmp_path: Path) -> dict[str, Path]:
    paths = {}
    for cluster in CLUSTERS:
        path = paths[cluster] = tmp_path / f"{cluster}.log"
        path.write_bytes(gzip.decompress((DATA / f"{cluster}.log.gz").read_bytes()))
    return paths


def _import(url: str, logs: dict[str, Path], *match: str) -> None:
    for cluster, path in logs.items():
        flags = [arg for m in match for arg in ("--match", m)]
        _cli("import", "--store", url, "--cluster", cluster, *flags, str(path))


def _api_all(server: Any, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Every page of /api/v1/events, through its cursors."""
    docs: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = params + [("limit", "50")] + ([("before", cursor)] if cursor else [])
        status, page = server.api_get("/api/v1/events?" + urllib.parse.urlencode(query))
        assert status == 200, page
        docs += page["events"]
        cursor = page["next"]
        if cursor is None:
            return docs


def _ui_all(server: Any, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Every page of the explorer (/ui/events.json), every stage, through its older links."""
    docs: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = params + [("range", "all"), ("rows", "stages"), ("limit", "50")]
        status, page = server.api_get("/ui/events.json?" + urllib.parse.urlencode(
            query + ([("before", cursor)] if cursor else [])))
        assert status == 200, page
        docs += [{"cluster": row["cluster"],
                  "event": {"auditID": row["auditID"], "stage": row["stage"]}}
                 for row in page["events"]]
        cursor = page["next"]
        if cursor is None:
            return docs


def test_every_field_through_every_surface(store_url: str, logs: dict[str, Path],
                                           server_factory: Any, tmp_path: Path) -> None:
    _import(store_url, logs)
    server = server_factory("--store", store_url, "--format", "none", "--no-rules")
    wrong = []
    for number, (field, value) in enumerate(CASES + [(f"-{f}", v) for f, v in NEGATED]):
        negate = field.startswith("-")
        spec = BY_NAME[field.lstrip("-")]
        pairs = [(("-" if negate else "") + spec.name, value)]
        expected = _expected(pairs)
        term = f'{"-" if negate else ""}{spec.name}:"{value}"'
        answers = {
            # After --: a query that starts with "-" (exclude) is not an option.
            "query bar": _keys(json.loads(_cli("query", "--store", store_url, "--format",
                                               "json", "--limit", "100000", "--", term))),
            "api": _keys(_api_all(server, [(spec.name + ("!" if negate else ""), value)])),
            "api q=": _keys(_api_all(server, [("q", term)])),
            # The form's inputs are named FIELD (must) and FIELD! (must not); an empty value
            # is typed "" (an empty input is not sent).
            "ui form": _keys(_ui_all(server, [(spec.name + ("!" if negate else ""),
                                               spell(value))])),
            "ui query bar": _keys(_ui_all(server, [("q", term)])),
        }
        if not negate:
            answers["cli flag"] = _keys(json.loads(_cli(
                "query", "--store", store_url, f"--{spec.flag}", value, "--format", "json",
                "--limit", "100000")))
        # The in-flight predicate: what `import --match` keeps.
        matched = f"sqlite:///{tmp_path}/match-{number}.db"
        _import(matched, logs, f"{spec.name}{'!' if negate else ''}={value}")
        answers["--match"] = _keys(json.loads(_cli("query", "--store", matched, "--format",
                                                   "json", "--limit", "100000")))
        for surface, got in answers.items():
            if got != expected:
                wrong.append(f"{term} via {surface}: {len(got)} events, expected {len(expected)}")
    assert not wrong, wrong
    # The cases are not vacuous: most select something, and not everything.
    total = len(_expected([]))
    sizes = [len(_expected([(f, v)])) for f, v in CASES]
    assert sum(0 < n < total for n in sizes) >= len(CASES) - 4, sizes
