"""Server-side policy: drop, downgrade and omitManagedFields on events already recorded."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from auditsink.admit.apply import strip_managed_fields
from auditsink.admit.policy import Policy, apply_policy, load_policy
from auditsink.model import Item, decode_body

POD = {
    "kind": "Pod",
    "metadata": {"name": "web", "managedFields": [{"manager": "kubectl"}]},
    "spec": {},
}
POD_LIST = {"kind": "PodList", "items": [POD, {"metadata": {"name": "b"}}]}


def policy(level: str, **extra: Any) -> Policy:
    doc = {"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": [{"level": level, **extra}]}
    return load_policy(json.dumps(doc))


def item(level: str = "RequestResponse", stage: str = "ResponseComplete", **fields: Any) -> Item:
    event = {
        "level": level,
        "auditID": "a1",
        "stage": stage,
        "requestURI": "/api/v1/namespaces/d/pods",
        "verb": "create",
        "user": {"username": "alice"},
        "objectRef": {"resource": "pods", "namespace": "d", "name": "web", "apiVersion": "v1"},
        "requestObject": POD,
        "responseObject": POD,
        **fields,
    }
    good, bad = decode_body(json.dumps(event).encode())
    assert not bad
    return good[0]


def decoded(kept: Item | None) -> dict[str, Any]:
    assert kept is not None
    result: dict[str, Any] = json.loads(kept.raw)
    return result


def test_level_none_drops() -> None:
    assert apply_policy(policy("None"), item()) is None


def test_omitted_stage_drops() -> None:
    p = policy("RequestResponse", omitStages=["ResponseComplete"])
    assert apply_policy(p, item()) is None
    assert apply_policy(p, item(stage="ResponseStarted")) is not None


def test_unchanged_item_is_returned_as_is() -> None:
    original = item()
    assert apply_policy(policy("RequestResponse"), original) is original
    # a higher policy level cannot add what was never recorded
    metadata_only = item(level="Metadata", requestObject=None, responseObject=None)
    assert apply_policy(policy("RequestResponse"), metadata_only) is metadata_only


@pytest.mark.parametrize(
    ("level", "has_request", "has_response"),
    [("Request", True, False), ("Metadata", False, False)],
)
def test_downgrade_strips_bodies(level: str, has_request: bool, has_response: bool) -> None:
    original = item()
    kept = apply_policy(policy(level), original)
    body = decoded(kept)
    assert body["level"] == level
    assert ("requestObject" in body) is has_request
    assert ("responseObject" in body) is has_response
    assert kept is not None and kept.event.level == level
    # the input is left alone
    assert original.event.level == "RequestResponse" and len(original.event.responseObject)


def test_omit_managed_fields_strips_objects_and_list_items() -> None:
    kept = apply_policy(
        policy("RequestResponse", omitManagedFields=True), item(responseObject=POD_LIST)
    )
    body = decoded(kept)
    assert body["requestObject"]["metadata"] == {"name": "web"}
    assert [i["metadata"] for i in body["responseObject"]["items"]] == [
        {"name": "web"},
        {"name": "b"},
    ]


def test_omit_managed_fields_leaves_json_patches_alone() -> None:
    patch = [{"op": "remove", "path": "/metadata/managedFields"}]
    original = item(level="Request", requestObject=patch, responseObject=None)
    assert apply_policy(policy("Request", omitManagedFields=True), original) is original


def test_strip_managed_fields_no_change_is_none() -> None:
    assert strip_managed_fields(msgspec.Raw(b'{"metadata":{"name":"a"}}')) is None
    assert strip_managed_fields(msgspec.Raw()) is None
    assert (
        strip_managed_fields(msgspec.Raw(b'{"metadata":{"name":"a"},"note":"managedFields"}'))
        is None
    )
