"""The user page's least-privilege section and its JSON twin, over a store holding a real API
server's audit log of the issue-14 workload (tests/data/rbac)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from auditsink.cli import main
from auditsink.store.sqlite import SQLiteStore
from auditsink.web import WebUI

DATA = Path(__file__).resolve().parent.parent / "data" / "rbac"
ROBOT = "system:serviceaccount:work:robot"


def _cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/audit.db"
    _cli("import", "--store", url, str(DATA / "workload-audit.log"))
    return url


@pytest.fixture
def ui(url: str) -> Iterator[WebUI]:
    store = SQLiteStore(url)
    store.open()
    yield WebUI(store)
    store.close()


def _page(ui: WebUI, username: str, suffix: str = ".json") -> Any:
    answer = ui.respond(f"/ui/users/{username}{suffix}", "")
    assert answer.status == 200, answer.body[:300]
    return json.loads(answer.body) if suffix == ".json" else answer.body.decode()


def _rules(text: str) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def test_suggested_rbac_is_the_cli_s(ui: WebUI, url: str) -> None:
    section = _page(ui, ROBOT)["rbac"]
    assert (section["identity"], section["requests"], section["denied"]) == (
        "ServiceAccount work/robot", 51, 0)
    cli = _cli("rbac", "suggest", "--store", url, "--serviceaccount", "work:robot")
    assert _rules(section["yaml"]) == _rules(cli)
    # The command it shows gives the same answer.
    assert section["command"].startswith("auditsink rbac suggest --serviceaccount work:robot "
                                         "--since 2026-12-03T12:20:4")
    args = section["command"].split()[1:]
    assert _rules(_cli(*args, "--store", url)) == _rules(cli)
    assert section["granted"] is None
    html = _page(ui, ROBOT, "")
    assert 'id="rbac-yaml"' in html and "kind: ClusterRole" in html
    assert "No granted snapshot is loaded for this cluster" in html


def test_impersonated_requests_count_for_who_was_impersonated(ui: WebUI) -> None:
    section = _page(ui, "carol")["rbac"]
    assert (section["requests"], section["denied"]) == (1, 1)
    (role, binding) = _rules(section["yaml"])
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"],
                              "verbs": ["get", "list", "watch"]}]
    assert binding["subjects"] == [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io",
                                    "name": "carol"}]
    assert "the denied one included" in _page(ui, "carol", "")


def test_granted_but_unused_once_a_snapshot_is_loaded(ui: WebUI, url: str) -> None:
    _cli("rbac", "load", "--store", url, "--granted", str(DATA / "granted-harness.yaml"))
    granted = _page(ui, ROBOT)["rbac"]["granted"]
    assert (granted["granted"], granted["used"], granted["ratio"]) == (4, 3, 0.75)
    assert granted["unused"] == [{
        "where": "work", "permission": "get configmaps",
        "via": "RoleBinding/work/robot-cm -> Role/work/cm-reader"}]
    assert [w["permission"] for w in granted["wildcards"]] == ["* *.*", "* URLs *"]
    html = _page(ui, ROBOT, "")
    assert "Used <strong>3 of 4</strong> granted permissions (75%)" in html
    assert 'id="rbac-unused"' in html and 'id="rbac-wildcards"' in html


def test_nothing_to_grant_for_an_idle_identity(ui: WebUI) -> None:
    section = _page(ui, "nobody")["rbac"]
    assert (section["requests"], section["yaml"]) == (0, None)
    assert "No requests in this range: nothing to grant." in _page(ui, "nobody", "")
