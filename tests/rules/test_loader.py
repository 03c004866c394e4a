"""Rule files: definitions, appends, overrides, exceptions, sources and error messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from auditsink.rules import RuleLoadError, RuleSet, load_rules, load_rules_text
from auditsink.rules.engine import compile_rules
from auditsink.rules.loader import Collection

BASE = """
- list: admins
  items: [alice]
- macro: by_admin
  condition: ka.user.name in (admins)
- rule: Admin Write
  desc: an admin wrote something
  condition: ka.verb in (create, update) and by_admin
  output: "%ka.user.name wrote %ka.target.resource/%ka.target.name in %ka.target.namespace"
  priority: notice
  tags: [a]
  source: k8s_audit
"""


def event(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "auditID": "id-1",
        "stage": "ResponseComplete",
        "verb": "create",
        "user": {"username": "alice"},
        "objectRef": {"resource": "configmaps", "name": "c", "namespace": "ns"},
        "stageTimestamp": "2024-01-01T00:00:00.000001Z",
    }
    base.update(fields)
    return base


def load(*extra: str) -> RuleSet:
    return load_rules_text(
        [("base.yaml", BASE)] + [(f"extra{i}.yaml", t) for i, t in enumerate(extra)]
    )


def fired(rs: RuleSet, **fields: Any) -> list[str]:
    return [d.rule for d in rs.evaluate(event(**fields))]


def test_detection_fields() -> None:
    (det,) = load().evaluate(event())
    assert det.rule == "Admin Write"
    assert det.priority == "NOTICE"
    assert det.output == "alice wrote configmaps/c in ns"
    assert det.tags == ["a"]
    assert det.auditID == "id-1"
    assert det.time == "2024-01-01T00:00:00.000001Z"
    assert det.to_dict()["output_fields"]["ka.target.name"] == "c"
    assert det.to_dict(include_event=True)["event"]["verb"] == "create"


def test_raw_bytes_and_dicts_give_the_same_detections() -> None:
    rs = load()
    raw = msgspec.json.encode(event())
    assert rs.evaluate(raw) == rs.evaluate(event()) == rs.evaluate(raw.decode())
    assert rs.evaluate(raw)[0].event == raw


def test_missing_output_field_renders_na() -> None:
    (det,) = load().evaluate(event(objectRef={"resource": "namespaces", "name": "x"}))
    assert det.output == "alice wrote namespaces/x in <NA>"


def test_list_append_legacy_and_override() -> None:
    legacy = "- list: admins\n  items: [bob]\n  append: true\n"
    override = "- list: admins\n  items: [carol]\n  override: {items: append}\n"
    replace = "- list: admins\n  items: [dave]\n  override: {items: replace}\n"
    rs = load(legacy, override)
    assert fired(rs, user={"username": "bob"}) == ["Admin Write"]
    assert fired(rs, user={"username": "carol"}) == ["Admin Write"]
    rs = load(replace)
    assert fired(rs, user={"username": "alice"}) == []
    assert fired(rs, user={"username": "dave"}) == ["Admin Write"]


def test_macro_append_and_replace() -> None:
    append = "- macro: by_admin\n  condition: or ka.user.name=root\n  append: true\n"
    rs = load(append)
    assert fired(rs, user={"username": "root"}) == ["Admin Write"]
    replace = (
        "- macro: by_admin\n  condition: ka.user.name=root\n  override: {condition: replace}\n"
    )
    rs = load(replace)
    assert fired(rs, user={"username": "alice"}) == []


def test_rule_condition_append_and_replace() -> None:
    append = "- rule: Admin Write\n  condition: and ka.target.namespace != ns\n  append: true\n"
    assert fired(load(append)) == []
    override = (
        "- rule: Admin Write\n  condition: and not ka.target.name=c\n  output: (again)\n"
        "  override: {condition: append, output: append}\n"
    )
    rs = load(override)
    assert fired(rs) == []
    assert rs.evaluate(event(objectRef={"resource": "x", "name": "d", "namespace": "n"}))[
        0
    ].output.endswith("in n (again)")
    replace = (
        "- rule: Admin Write\n  condition: ka.verb=delete\n  priority: ERROR\n"
        "  override: {condition: replace, priority: replace}\n")
    rs = load(replace)
    assert fired(rs) == []
    assert [(d.rule, d.priority) for d in rs.evaluate(event(verb="delete"))] == [
        ("Admin Write", "ERROR")
    ]


def test_enable_disable_and_redefine() -> None:
    rs = load("- rule: Admin Write\n  enabled: false\n")
    assert rs.rules == [] and [r.name for r in rs.disabled] == ["Admin Write"]
    rs = load("- rule: Admin Write\n  enabled: false\n", "- rule: Admin Write\n  enabled: true\n")
    assert len(rs.rules) == 1
    rs = load("- rule: Admin Write\n  enabled: false\n  override: {enabled: replace}\n")
    assert rs.rules == []
    redefined = (
        "- rule: Admin Write\n  desc: d\n  condition: ka.verb=get\n  output: o\n  priority: debug\n"
    )
    rs = load(redefined)
    assert fired(rs) == [] and fired(rs, verb="get") == ["Admin Write"]
    assert rs.rules[0].priority == "DEBUG"


def test_exceptions_tuple_form_with_list_values() -> None:
    rule = """
- rule: Admin Write
  exceptions:
    - name: known
      fields: [ka.target.namespace, ka.target.name]
      comps: [=, in]
      values:
        - [ns, [c, d]]
        - [other, [e]]
  override: {exceptions: append}
"""
    rs = load(rule)
    assert fired(rs) == []
    assert fired(rs, objectRef={"resource": "r", "name": "x", "namespace": "ns"}) == ["Admin Write"]
    assert fired(rs, objectRef={"resource": "r", "name": "e", "namespace": "other"}) == []


def test_exceptions_single_field_form_and_value_append() -> None:
    first = """
- rule: Admin Write
  exceptions:
    - name: namespaces
      fields: ka.target.namespace
      values: [kube-system]
  append: true
"""
    more = """
- rule: Admin Write
  exceptions:
    - name: namespaces
      values: [ns]
  append: true
"""
    assert fired(load(first)) == ["Admin Write"]
    assert fired(load(first, more)) == []


def test_exception_defaults_to_equality_and_list_names_expand() -> None:
    rule = """
- list: quiet_users
  items: [alice]
- rule: Admin Write
  exceptions:
    - name: users
      fields: [ka.user.name, ka.verb]
      comps: [in, =]
      values:
        - [quiet_users, create]
  override: {exceptions: append}
"""
    assert fired(load(rule)) == []
    assert fired(load(rule), verb="update") == ["Admin Write"]


def test_other_sources_are_skipped_and_default_source_kept() -> None:
    text = """
- rule: Shell
  desc: syscall rule
  condition: proc.name = bash
  output: shell
  priority: WARNING
  source: syscall
- rule: No Source
  desc: kept
  condition: ka.verb = get
  output: got
  priority: info
"""
    rs = load_rules_text([("mixed.yaml", text)])
    assert [r.name for r in rs.rules] == ["No Source"]
    assert [r.name for r in rs.skipped] == ["Shell"]


def test_tolerated_top_level_items() -> None:
    text = (
        "- required_engine_version: 15\n- required_plugin_versions:\n    - name: k8saudit\n"
        "      version: 0.1.0\n")
    assert load_rules_text([("v.yaml", text)]).rules == []


def test_files_load_in_order(tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text(BASE)
    extra = tmp_path / "local.yaml"
    extra.write_text("- list: admins\n  items: [zed]\n  append: true\n")
    rs = load_rules([base, extra])
    assert fired(rs, user={"username": "zed"}) == ["Admin Write"]
    with pytest.raises(RuleLoadError, match="local.yaml.*not defined"):
        load_rules([extra, base])


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        (
            "- rule: R\n  desc: d\n  output: o\n  priority: loud\n  condition: ka.verb=get\n",
            ["bad.yaml:1", "rule 'R'", "unknown priority"],
        ),
        (
            "- rule: R\n  desc: d\n  output: o\n  condition: ka.verb=get\n",
            ["missing key(s): priority"],
        ),
        (
            "- rule: R\n  desc: d\n  output: o\n  priority: info\n  condition: |\n"
            "    ka.verb=get and\n    ka.bogus=1\n",
            ["rule 'R'", "unknown field 'ka.bogus'", "line 2 column 1"],
        ),
        (
            "- rule: R\n  desc: d\n  output: o\n  priority: info\n"
            "  condition: ka.verb=get and nosuch\n",
            ["undefined macro 'nosuch'", "column 17"],
        ),
        ("- macro: m\n  condition: ka.verb in (a\n", ["macro 'm'", "expected ',' or ')'"]),
        (
            "- macro: m\n  condition: ka.bad=1\n- rule: R\n  desc: d\n  output: o\n"
            "  priority: info\n  condition: ka.verb=get and m\n",
            ["rule 'R'", "in macro 'm'", "unknown field"],
        ),
        (
            "- rule: R\n  desc: d\n  output: '%ka.nope'\n  priority: info\n"
            "  condition: ka.verb=get\n",
            ["output: unknown field 'ka.nope'"],
        ),
        ("- rule: R\n  condition: x\n  append: true\n", ["rule 'R'", "not defined"]),
        (
            "- list: l\n  items: [a]\n  append: true\n  override: {items: append}\n",
            ["cannot be combined"],
        ),
        (
            "- rule: R\n  desc: d\n  output: o\n  priority: info\n  condition: ka.verb=get\n"
            "  exceptions:\n    - name: e\n      fields: [ka.verb, ka.uri]\n"
            "      values: [[get]]\n",
            ["exception 'e'", "2 items"],
        ),
        (
            "- rule: R\n  desc: d\n  output: o\n  priority: info\n  condition: ka.verb=get\n"
            "  exceptions:\n    - name: e\n      fields: [ka.nosuch]\n      values: [[x]]\n",
            ["exception 'e'", "unknown field"],
        ),
        (
            "- macro: a\n  condition: b\n- macro: b\n  condition: a\n- rule: R\n  desc: d\n"
            "  output: o\n  priority: info\n  condition: a\n",
            ["refers to itself"],
        ),
        ("- nonsense: 1\n", ["unknown item"]),
        ("rule: R\n", ["a YAML list"]),
        ("- rule: [\n", ["invalid YAML"]),
    ],
)
def test_errors_name_file_rule_and_position(text: str, fragments: list[str]) -> None:
    with pytest.raises(RuleLoadError) as exc:
        load_rules_text([("bad.yaml", text)])
    message = str(exc.value)
    assert message.startswith("bad.yaml")
    for fragment in fragments:
        assert fragment in message, message


def test_missing_file_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(RuleLoadError, match="cannot read"):
        load_rules([tmp_path / "nope.yaml"])


def test_rule_matching_first_stops_at_the_first_rule_in_load_order() -> None:
    second = """
- rule: Any Create
  desc: any create
  condition: ka.verb=create
  output: create
  priority: debug
"""
    texts = [("base.yaml", BASE), ("second.yaml", second)]
    assert [d.rule for d in load_rules_text(texts).evaluate(event())] == [
        "Admin Write",
        "Any Create",
    ]
    coll = Collection()
    for name, text in texts:
        coll.load_text(text, name)
    first = compile_rules(coll, rule_matching="first")
    assert [d.rule for d in first.evaluate(event())] == ["Admin Write"]
    assert [d.rule for d in first.evaluate(event(user={"username": "x"}))] == ["Any Create"]
    with pytest.raises(ValueError, match="rule_matching"):
        compile_rules(coll, rule_matching="some")


def test_exceptions_replace_drops_the_old_ones() -> None:
    with_exception = """
- rule: Admin Write
  exceptions:
    - name: ns
      fields: ka.target.namespace
      values: [ns]
  append: true
"""
    replaced = """
- rule: Admin Write
  exceptions:
    - name: other
      fields: ka.target.name
      values: [zzz]
  override: {exceptions: replace}
"""
    assert fired(load(with_exception)) == []
    assert fired(load(with_exception, replaced)) == ["Admin Write"]


def test_output_template_forms() -> None:
    rule = """
- rule: Admin Write
  output: "100% sure: %(ka.user.name) %ka.uri.param[x] %jevt.value[/objectRef/name]."
  override: {output: replace}
"""
    (det,) = load(rule).evaluate(event(requestURI="/api?x=1"))
    assert det.output == "100% sure: alice 1 c."
    assert det.output_fields == {
        "ka.user.name": "alice",
        "ka.uri.param[x]": "1",
        "jevt.value[/objectRef/name]": "c",
    }
