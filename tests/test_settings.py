"""The settings table: one config file for every command, one environment name per setting,
flags generated from the table, and docs/configuration.md generated from it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from auditsink import service
from auditsink.cli import main
from auditsink.cli.options import SettingOption
from auditsink.settings import (
    READ, SETTINGS, SETTINGS_BY_NAME, Setting, Settings, SettingsError, Spec, load, markdown,
    parse_config,
)

ROOT = Path(__file__).resolve().parent.parent


def _event(audit_id: str, verb: str, user: str = "alice") -> dict[str, Any]:
    return {
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
        "auditID": audit_id, "stage": "ResponseComplete",
        "requestURI": "/api/v1/namespaces/demo/pods/web", "verb": verb,
        "user": {"username": user},
        "objectRef": {"resource": "pods", "namespace": "demo", "name": "web", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": "2026-11-26T14:19:58.101234Z",
        "stageTimestamp": "2026-11-26T14:19:58.120481Z",
    }


@pytest.fixture
def audit_log(tmp_path: Path) -> Path:
    """Three events as --audit-log-path writes them: a create, a get and a delete."""
    path = tmp_path / "audit.log"
    path.write_text("".join(json.dumps(_event(f"id-{verb}", verb)) + "\n"
                            for verb in ("create", "get", "delete")))
    return path


def _commands(group: click.Group, prefix: str = "") -> dict[str, click.Command]:
    found: dict[str, click.Command] = {}
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            found.update(_commands(command, path + " "))
        else:
            found[path] = command
    return found


def test_docs_page_is_generated_from_the_table() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text()
    assert page == markdown(), "run: python -m auditsink.settings > docs/configuration.md"


def test_every_command_has_exactly_the_flags_of_its_settings() -> None:
    for path, command in _commands(main).items():
        options = {p.setting.name: p for p in command.params if isinstance(p, SettingOption)}
        wanted = {s.name for s in SETTINGS if path in s.spec.commands and s.flag}
        assert set(options) == wanted, path
        for name, option in options.items():
            setting = SETTINGS_BY_NAME[name]
            assert option.help == setting.spec.help and option.envvar == setting.env
            assert f"--{name.replace('_', '-')}" in option.opts
        if options:
            assert any(p.name == "config" for p in command.params), f"{path} has no --config"
        # No setting is defined by hand a second time beside the generated one.
        flags = [opt for p in command.params for opt in getattr(p, "opts", [])]
        assert len(flags) == len(set(flags)), path
        hand_made = {opt for p in command.params if not isinstance(p, SettingOption)
                     for opt in getattr(p, "opts", [])}
        assert not hand_made & {SETTINGS_BY_NAME[n].flag for n in wanted}, path
    assert set(READ) <= set(_commands(main))


def test_one_config_file_serves_every_command(tmp_path: Path) -> None:
    store = tmp_path / "elsewhere.db"
    config = tmp_path / "auditsink.yaml"
    # serve-only keys (listen, format, retention) beside worker-only ones (fetch) and a store.
    config.write_text(f"listen: 127.0.0.1:9\nformat: none\nretention: 30d\nfetch: 8\n"
                      f"store: sqlite:///{store}\n")
    result = CliRunner().invoke(main, ["worker", "--config", str(config)])
    assert result.exit_code == 2 and "--bus nats://HOST:PORT is required" in result.output
    result = CliRunner().invoke(main, ["query", "--config", str(config)])
    assert result.exit_code == 1 and f"no store at {store}" in result.output


def test_flag_beats_environment_beats_config_file(tmp_path: Path) -> None:
    config = tmp_path / "auditsink.yaml"
    config.write_text(f"store: sqlite:///{tmp_path}/from-file.db\n")
    env = {"AUDITSINK_STORE": f"sqlite:///{tmp_path}/from-env.db"}

    def where(*args: str, **env: str) -> str:
        result = CliRunner().invoke(main, ["stats", "--config", str(config), *args], env=env)
        assert result.exit_code == 1, result.output
        return result.output.split("no store at ", 1)[1].split(":", 1)[0]

    assert where() == f"{tmp_path}/from-file.db"
    assert where(**env) == f"{tmp_path}/from-env.db"
    flag = where("--store", f"sqlite:///{tmp_path}/from-flag.db", **env)
    assert flag == f"{tmp_path}/from-flag.db"


def test_environment_names_come_from_the_setting(tmp_path: Path, audit_log: Path) -> None:
    store = f"sqlite:///{tmp_path}/env.db"
    env = {"AUDITSINK_STORE": store, "AUDITSINK_MATCH": "verb=create verb=delete"}
    result = CliRunner().invoke(main, ["import", str(audit_log)], env=env)
    assert result.exit_code == 0, result.output
    assert "imported 2 events into" in result.output
    # AUDITSINK_FORMAT is `--format`'s name; a bad value is refused as the flag's would be.
    result = CliRunner().invoke(main, ["serve"], env={"AUDITSINK_FORMAT": "yaml"})
    assert result.exit_code == 2 and "'--format'" in result.output and "yaml" in result.output


@pytest.mark.parametrize(("text", "message"), [
    ("listen: 127.0.0.1:9\nlisten_port: 5\n", "unknown key 'listen_port' (did you mean 'listen'?)"),
    ("queue_events: lots\n", "key 'queue_events': expected an integer, got 'lots'"),
    ("insecure: maybe\n", "key 'insecure': expected true or false"),
    ("sync: always\n", "key 'sync': expected one of normal, full, got 'always'"),
    ("bus_replicas: 9\n", "key 'bus_replicas': expected 1 to 5, got 9"),
    ("policy: missing.yaml\n", "key 'policy': no such file: missing.yaml"),
    ("match: {verb: get}\n", "key 'match': expected a list of strings"),
    ("- listen\n", "expected a mapping of settings at the top level"),
])
def test_config_errors_name_file_key_and_expectation(tmp_path: Path, text: str,
                                                     message: str) -> None:
    config = tmp_path / "auditsink.yaml"
    config.write_text(text)
    result = CliRunner().invoke(main, ["serve", "--config", str(config)])
    assert result.exit_code == 2
    assert str(config) in result.output and message in " ".join(result.output.split())


def test_values_are_coerced_to_the_setting_type() -> None:
    values = parse_config({"path": "/audit", "match": ["verb=get", "code=403"],
                           "body-timeout": 5, "max_body": 1048576}, "x.yaml")
    assert values == {"path": ("/audit",), "match": ("verb=get", "code=403"),
                      "body_timeout": 5.0, "max_body": "1048576"}
    assert load(queue_events=5).queue_events == 5
    with pytest.raises(SettingsError, match="unknown setting 'queue'"):
        load(queue=5)
    with pytest.raises(SettingsError, match="format 'yaml': expected one of"):
        Settings(format="yaml")


def test_a_list_of_mappings_setting() -> None:
    """The shape `outputs:` takes: config file only, each item a mapping."""
    outputs = Setting("outputs", tuple[dict[str, Any], ...], (),
                      Spec("Outputs.", ("serve",), flag=False))
    assert outputs.kind == "mappings" and outputs.flag is None
    value = outputs.coerce([{"kind": "file", "path": "/x"}], "x.yaml")
    assert value == ({"kind": "file", "path": "/x"},)
    with pytest.raises(SettingsError, match="key 'outputs': expected a list of mappings"):
        outputs.coerce(["file"], "x.yaml")


def test_import_from_python(tmp_path: Path, audit_log: Path) -> None:
    settings = Settings(store=f"sqlite:///{tmp_path}/py.db", match=("verb=delete",))
    assert service.import_files(settings, [str(audit_log)]).stored == 1
    again = service.import_files(settings.replace(match=()), [str(audit_log)])
    assert (again.stored, again.duplicates) == (2, 1)


def test_build_assembles_serve(tmp_path: Path) -> None:
    built = service.build(Settings(store=f"sqlite:///{tmp_path}/b.db", format="none"))
    try:
        names = sorted(type(c).__name__ for c in built.consumers)
        assert names == ["Detector", "Rollup"] and built.api_app is not None
        assert built.pipeline.printer is None and built.options.api_listen == "127.0.0.1:8081"
        assert "auditsink_rules_lag_events" in built.pipeline.metrics.gauges
    finally:
        assert built.pipeline.store is not None
        built.pipeline.store.close()
    with pytest.raises(SettingsError, match="beyond loopback"):
        service.build(Settings(listen="0.0.0.0:8080", store="none"))


def test_run_serves_from_python(tmp_path: Path) -> None:
    """`service.run(settings)` is the whole server: started here without the CLI."""
    from conftest import free_port

    port, api_port = free_port(), free_port()
    code = ("from auditsink import service, settings\n"
            f"service.run(settings.Settings(listen='127.0.0.1:{port}', "
            f"api_listen='127.0.0.1:{api_port}', store='sqlite:///py.db', format='json'))\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        import http.client
        import time

        body = json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1",
                           "items": [_event("py-1", "delete")]}).encode()
        deadline = time.monotonic() + 20
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("POST", "/?timeout=30s", body, {"Content-Type": "application/json"})
                assert conn.getresponse().status == 200
                break
            except ConnectionRefusedError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
            finally:
                conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", api_port, timeout=10)
        try:
            conn.request("GET", "/api/v1/events/py-1")
            answer = json.loads(conn.getresponse().read())
        finally:
            conn.close()
        assert answer["events"][0]["event"]["verb"] == "delete"
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert json.loads(out.splitlines()[0])["auditID"] == "py-1"
