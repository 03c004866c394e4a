"""Bad input from the command line: a clear error and an exit status, never a traceback, and
``import`` commits every readable file (and the readable rest of a file) with a summary."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DATA

AUDIT_LOG = DATA / "fixtures" / "kube-apiserver-1.20" / "audit.log"


def auditsink(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "auditsink", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture()
def inputs(tmp_path: Path) -> dict[str, Path]:
    text = AUDIT_LOG.read_bytes()
    midline = tmp_path / "copied-mid-line.log"
    midline.write_bytes(text[200:])  # starts inside the first event
    notjson = tmp_path / "notes.txt"
    notjson.write_text("these are not audit events\n")
    badgz = tmp_path / "audit-2026-11-26T14-19-52.123.log.gz"
    badgz.write_text("not gzip at all\n")
    good = tmp_path / "rules.log.gz"
    good.write_bytes((DATA / "rules" / "audit.log.gz").read_bytes())
    empty = tmp_path / "audit.log"  # the API server's current log, just rotated
    empty.write_bytes(b"")
    return {"midline": midline, "notjson": notjson, "badgz": badgz, "good": good, "empty": empty}


def test_a_first_line_that_is_not_json_costs_only_itself(tmp_path: Path,
                                                          inputs: dict[str, Path]) -> None:
    result = auditsink("import", "--store", "sqlite:///a.db", str(inputs["midline"]), cwd=tmp_path)
    lines = AUDIT_LOG.read_bytes().count(b"\n")
    assert result.returncode == 0, result.stderr
    assert f"imported {lines - 1} events" in result.stderr and "1 unreadable" in result.stderr
    assert f"{inputs['midline']}: line 1: body is not JSON" in result.stderr


def test_many_files_one_bad_a_summary_of_what_was_committed(tmp_path: Path,
                                                            inputs: dict[str, Path]) -> None:
    order = [inputs["midline"], inputs["notjson"], inputs["badgz"], inputs["good"], inputs["empty"]]
    result = auditsink("import", "--store", "sqlite:///b.db", *map(str, order), cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    err = result.stderr
    lines = AUDIT_LOG.read_bytes().count(b"\n")
    trace = gzip.decompress(inputs["good"].read_bytes()).count(b"\n")
    assert f"{inputs['midline']}: {lines - 1} stored, 0 already there, 1 unreadable" in err
    assert f"{inputs['notjson']}: 0 stored, 0 already there, 1 unreadable (nothing readable)" in err
    assert f"error: {inputs['badgz']}: cannot read it: Not a gzipped file" in err
    # The file after the bad ones was imported too, and everything read is in the store.
    assert f"{inputs['good']}: {trace} stored" in err
    assert f"imported {lines - 1 + trace} events" in err
    assert f"{inputs['empty']}: 0 stored, 0 already there, 0 unreadable\n" in err
    assert (f"2 of 5 file(s) could not be read: {inputs['notjson']}, {inputs['badgz']}"
            in err)
    stats = auditsink("stats", "--store", "sqlite:///b.db", "--format", "json", cwd=tmp_path)
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["events"] == lines - 1 + trace
    again = auditsink("import", "--store", "sqlite:///b.db", str(inputs["good"]), cwd=tmp_path)
    assert again.returncode == 0 and f"({trace} already there" in again.stderr


@pytest.mark.parametrize("command", [["policy", "simulate", "--policy", "POLICY"],
                                     ["policy", "suggest"]])
def test_policy_commands_on_bad_input(tmp_path: Path, inputs: dict[str, Path],
                                      command: list[str]) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n")
    args = [str(policy) if a == "POLICY" else a for a in command]
    for bad in ([str(inputs["notjson"])], [str(inputs["badgz"])], ["--store", "sqlite:///"]):
        result = auditsink(*args, *bad, cwd=tmp_path)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith("Error: ")
    # A log copied mid-line is read, its first line skipped and said so.
    result = auditsink(*args, str(inputs["midline"]), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"skipped 1 undecodable event(s); first: {inputs['midline']}: body is not JSON" in (
        result.stderr)


def test_read_commands_name_a_store_url_without_a_file(tmp_path: Path) -> None:
    result = auditsink("query", "--store", "sqlite:///", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "no file name; use sqlite:///auditsink.db" in result.stderr
