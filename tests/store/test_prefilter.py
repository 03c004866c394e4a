"""The rules consumer's prefilter (store/sql/prefilter.py) keeps exactly the rows that pass
one of its filters, on every backend: random filters over random rows, each answer checked
against the filters evaluated in Python."""

from __future__ import annotations

import json
import random
from typing import Any

from auditsink.model import decode_body
from auditsink.store.base import RowFilter, Selector, open_store
from auditsink.store.sql.prefilter import prefilter_sql, wanted
from auditsink.timeutil import format_micros

STAGES = ("RequestReceived", "ResponseStarted", "ResponseComplete", "Panic")
VERBS = ("get", "list", "watch", "create", "update", "patch", "delete")
RESOURCES = ("pods", "secrets", "configmaps", "roles", "")
SUBRESOURCES = ("", "exec", "status")
NAMESPACES = ("default", "kube-system", "")
USERS = ("alice", "bob", "system:anonymous")
CODES = (200, 201, 401, 403, 404, 500)
# Values a filter may name though no stored event holds them.
NEVER_STORED = {"verbs": "deletecollection", "resources": "ingresses", "subresources": "log",
                "namespaces": "prod", "users": "mallory"}
CHOICES = {"verbs": VERBS, "resources": RESOURCES[:-1], "subresources": SUBRESOURCES[1:],
           "namespaces": NAMESPACES[:-1], "users": USERS}


def _event(rng: random.Random, index: int) -> dict[str, Any]:
    when = format_micros(1_795_000_000_000_000 + index)
    event: dict[str, Any] = {
        "level": "Metadata", "auditID": f"id-{index}", "stage": rng.choice(STAGES),
        "verb": rng.choice(VERBS), "user": {"username": rng.choice(USERS)},
        "requestURI": "/api/v1/x", "stageTimestamp": when, "requestReceivedTimestamp": when,
        "responseStatus": {"code": rng.choice(CODES)},
    }
    resource = rng.choice(RESOURCES)
    if resource:
        event["objectRef"] = {"resource": resource, "namespace": rng.choice(NAMESPACES),
                              "subresource": rng.choice(SUBRESOURCES)}
    if rng.random() < 0.1:
        event["impersonatedUser"] = {"username": "bob"}
    return event


def _filter(rng: random.Random) -> RowFilter:
    fields: dict[str, Any] = {}
    if rng.random() < 0.7:
        fields["stages"] = frozenset(rng.sample(STAGES, rng.randint(0, 2)))
    for field, choices in CHOICES.items():
        if rng.random() < 0.4:
            values = set(rng.sample(choices, rng.randint(0, 2)))
            if rng.random() < 0.2:
                values.add(NEVER_STORED[field])
            fields[field] = frozenset(values)
    if rng.random() < 0.15:
        fields["impersonated"] = True
    if rng.random() < 0.25:
        low = rng.choice(CODES)
        fields["codes"] = (low, low + rng.choice((0, 99)))
    return RowFilter(**fields)


def _passes(doc: dict[str, Any], each: RowFilter) -> bool:
    ref = doc.get("objectRef", {})
    row = {"stages": doc["stage"], "verbs": doc["verb"], "resources": ref.get("resource", ""),
           "subresources": ref.get("subresource", ""), "namespaces": ref.get("namespace", ""),
           "users": doc["user"]["username"]}
    if any(getattr(each, field) is not None and value not in getattr(each, field)
           for field, value in row.items()):
        return False
    if each.impersonated and "impersonatedUser" not in doc:
        return False
    code = doc["responseStatus"]["code"]
    return each.codes is None or each.codes[0] <= code <= each.codes[1]


def test_follow_keeps_exactly_the_rows_some_filter_passes(store_url: str) -> None:
    rng = random.Random(16)
    docs = [_event(rng, index) for index in range(600)]
    store = open_store(store_url)
    store.open()
    try:
        items, bad = decode_body(json.dumps(docs).encode())
        assert not bad
        store.write(items)
        logged = [json.loads(e.raw) for e in store.iter_all(Selector())]
        assert len(logged) == len(docs)
        for _ in range(60):
            filters = tuple(_filter(rng) for _ in range(rng.randint(1, 6)))
            page = store.follow(0, 1000, filters)
            expected = [index + 1 for index, doc in enumerate(logged)
                        if any(_passes(doc, each) for each in filters)]
            assert [e.id for e in page] == expected, filters
            assert page.examined == len(docs)
    finally:
        store.close()


def test_a_value_stored_after_the_rules_were_loaded_is_found(store_url: str) -> None:
    # The ids are looked up for each page: the first "deletecollection" stored after a
    # follow without one is still kept by the next.
    store = open_store(store_url)
    store.open()
    filters = (RowFilter(verbs=frozenset({"deletecollection"})),)
    try:
        rng = random.Random(1)
        first = [_event(rng, index) for index in range(10)]
        for doc in first:
            doc["verb"] = "get"
        store.write(decode_body(json.dumps(first).encode())[0])
        assert not store.follow(0, 100, filters)
        later = _event(rng, 10)
        later["verb"] = "deletecollection"
        store.write(decode_body(json.dumps([later]).encode())[0])
        assert [e.id for e in store.follow(0, 100, filters)] == [11]
    finally:
        store.close()


def test_the_condition_is_a_tree_of_ids() -> None:
    filters = (RowFilter(stages=frozenset({"ResponseComplete"}), verbs=frozenset({"create"}),
                         resources=frozenset({"pods", "ingresses"})),
               RowFilter(codes=(401, 401)),
               RowFilter(stages=frozenset({"ResponseComplete"}), impersonated=True))
    assert wanted(filters) == ("create", "ingresses", "pods")
    ids = {"create": 7, "pods": 3}  # "ingresses" was never stored
    assert prefilter_sql(filters, ids) == (
        "((code BETWEEN 401 AND 401) OR CASE stage WHEN 2 THEN ((impersonated_user <> 0)"
        " OR CASE verb WHEN 7 THEN (resource IN (3)) ELSE FALSE END) ELSE FALSE END)")
    assert prefilter_sql(filters[:1], {}) == "1 = 0"  # no stored row has its verb
    assert prefilter_sql((RowFilter(),), {}) == "1 = 1"
