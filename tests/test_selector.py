"""The selector vocabulary: parsing from every surface and the Python predicate, kind by kind.

That the SQL twin answers the same is tested against both stores in
tests/store/test_selector_sql.py and through every surface in tests/test_surfaces.py.
"""

from __future__ import annotations

import dataclasses

import msgspec
import pytest

from auditsink.model import Event, ObjectReference, Status, UserInfo
from auditsink.selector import (
    FIELDS,
    Selector,
    SelectorError,
    compile_predicate,
    field_named,
    from_pairs,
    from_query,
    merge,
    parse_match,
    parse_query,
    parse_terms,
    to_query,
)


def _event(**changes: object) -> Event:
    event = Event(
        level="Metadata", auditID="a1", stage="ResponseComplete", verb="delete",
        requestURI="/api/v1/namespaces/demo/pods/web?gracePeriodSeconds=0",
        user=UserInfo(username="admin", groups=["system:masters"]),
        impersonatedUser=UserInfo(username="mallory"), sourceIPs=["10.1.2.3", "127.0.0.1"],
        userAgent="kubectl/v1.20.2 (linux/amd64)",
        objectRef=ObjectReference(resource="pods", namespace="demo", name="web", apiVersion="v1"),
        responseStatus=Status(code=403),
        stageTimestamp="2026-11-26T14:19:58.120481Z",
        annotations={"authorization.k8s.io/decision": "forbid"},
    )
    return msgspec.structs.replace(event, **changes)


def _matches(text: str, event: Event | None = None, cluster: str = "prod") -> bool:
    predicate = compile_predicate(parse_query(text))
    assert predicate is not None
    return predicate(event or _event(), cluster)


@pytest.mark.parametrize("query, expected", [
    ("user:mallory", True), ("user:admin", True), ("user:alice", False),
    ("authenticatedUser:admin", True), ("authenticatedUser:mallory", False),
    ("impersonatedUser:mallory", True), ("as:admin", False),
    ("group:system:masters", True), ("group:dev", False),
    ("verb:delete", True), ("verb:get verb:delete", True), ("verb:get", False),
    ("resource:pods", True), ("resource:pods/*", True), ("resource:pods/exec", False),
    ("apiGroup:", True), ("api-group:apps", False),
    ("namespace:demo", True), ("name:web", True), ("name:db", False),
    ("stage:ResponseComplete", True), ("level:Metadata", True), ("level:Request", False),
    ("code:403", True), ("code:4xx", True), ("code:5xx", False),
    ("cluster:prod", True), ("cluster:", False),
    ("sourceIP:10.1.2.3", True), ("sourceIP:10.0.0.0/8", True), ("ip:127.0.0.1", False),
    ("userAgent:kubectl", True), ("userAgent:Kubectl", False),
    ("decision:forbid", True), ("decision:allow", False),
    ("requestURI:/api/v1/namespaces/demo/", True), ("uri:/apis/", False),
    ("requestURI:/api/v1/namespaces/demo/pods/web?grace", False),  # the path only
    ("auditID:a1", True), ("audit-id:a2", False),
    ("-namespace:kube-system", True), ("-namespace:demo", False), ("-user:mallory", False),
    ("user:mallory -verb:get", True), ("user:mallory -code:4xx", False),
    ("since:2026-11-26T14:00:00Z until:2026-11-26T15:00:00Z", True),
    ("since:2026-11-26T15:00:00Z", False),
])
def test_each_kind_matches_as_documented(query: str, expected: bool) -> None:
    assert _matches(query) is expected


def test_events_without_an_object_or_impersonation() -> None:
    plain = _event(objectRef=None, impersonatedUser=None, responseStatus=None, annotations={},
                   sourceIPs=[])
    assert _matches("user:admin", plain)
    assert _matches("impersonatedUser:", plain)  # "": made without impersonation
    assert not _matches("impersonatedUser:")
    assert not _matches('user:""', _event(impersonatedUser=UserInfo(username="")))
    assert not _matches("resource:pods/*", plain)
    assert _matches("namespace:", plain)
    assert _matches("code:0", plain)  # no response yet (RequestReceived)
    assert not _matches("decision:allow", plain)
    assert not _matches("sourceIP:0.0.0.0/0", plain)


def test_query_bar_syntax() -> None:
    assert parse_terms('user:system:serviceaccount:kube-system:default') == [
        ("user", "system:serviceaccount:kube-system:default")]
    assert parse_terms('userAgent:"kubectl/v1.20 (linux)" -api-group:apps') == [
        ("userAgent", "kubectl/v1.20 (linux)"), ("-apiGroup", "apps")]
    selector = parse_query("user:alice user:bob -namespace:kube-system code:4xx")
    assert selector.users == ["alice", "bob"] and selector.codes == ["4xx"]
    assert selector.exclude is not None and selector.exclude.namespaces == ["kube-system"]
    assert parse_query("").is_empty()


@pytest.mark.parametrize("text, message", [
    ("alice", "expected KEY:VALUE"),
    ("colour:red", "unknown field 'colour'"),
    ("stage:Done", "unknown stage 'Done'"),
    ("code:4x", "invalid code '4x'"),
    ("sourceIP:10.0.0.0/33", "invalid sourceIP"),
    ("decision:deny", "unknown decision 'deny'"),
    ('user:"alice', "close the quote"),
    ("since:yesterday", "invalid time"),
    ("-since:2h", "cannot be negated"),
    ("since:2026-11-27T00:00:00Z until:2026-11-26T00:00:00Z", "until must be after since"),
])
def test_bad_queries_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(SelectorError, match=message):
        parse_query(text)


def test_match_flags() -> None:
    selector = parse_match(["verb=create", "namespace!=kube-system", "user=a=b"])
    assert selector.verbs == ["create"] and selector.users == ["a=b"]
    assert selector.exclude is not None and selector.exclude.namespaces == ["kube-system"]
    with pytest.raises(SelectorError, match="expected KEY=VALUE"):
        parse_match(["verb"])
    with pytest.raises(SelectorError, match="no time range"):
        parse_match(["since=2h"])
    assert compile_predicate(parse_match([])) is None


def test_query_strings_round_trip() -> None:
    selector = from_query({"user": ["alice"], "namespace!": ["kube-system"], "q": ["verb:get"],
                           "since": ["2026-11-26T14:00:00Z"], "limit": ["7"]})
    again = from_pairs(to_query(selector))
    assert again == selector
    assert selector.describe() == (
        "user:alice verb:get -namespace:kube-system since:2026-11-26T14:00:00.000000Z")


def test_merge_ands_the_conditions() -> None:
    merged = merge(parse_query("user:a since:2026-11-26T10:00:00Z"),
                   parse_query("verb:get -name:x since:2026-11-26T12:00:00Z"))
    assert merged.users == ["a"] and merged.verbs == ["get"]
    assert merged.exclude is not None and merged.exclude.names == ["x"]
    assert merged.since == parse_query("since:2026-11-26T12:00:00Z").since


def test_every_field_has_its_spellings() -> None:
    for spec in FIELDS:
        assert field_named(spec.name) is spec and field_named(spec.flag) is spec
        assert hasattr(Selector(), spec.attr), spec.attr
        assert spec.help.endswith("."), spec.name
        assert spec.example, spec.name
        assert parse_query(f"{spec.name}:{spec.example}").values(spec) == [spec.example]
    attrs = {f.name for f in dataclasses.fields(Selector)} - {"since", "until", "exclude"}
    assert attrs == {spec.attr for spec in FIELDS}


def test_docs_page_is_generated_from_the_table() -> None:
    from conftest import ROOT

    from auditsink.selector import markdown

    page = (ROOT / "docs" / "selectors.md").read_text()
    assert page == markdown(), "run: python -m auditsink.selector > docs/selectors.md"
    for spec in FIELDS:
        assert f"`--{spec.flag}`" in page and f"`{spec.name}`" in page
