"""Every shell block of the README, run as a newcomer pastes it on a fresh machine.

The quick start runs for real in a copy of the working tree ("a clone"): a new venv, ``pip
install -e .``, ``auditsink serve`` on its default ports. The rest runs against that server in
its directory, in page order; the commands that cannot run on one machine are excused by name
in ``docs_shell.EXCUSED``, and the test fails on any README command it neither ran nor excused.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from conftest import DATA, ROOT, free_port
from docs_shell import Sandbox, blocks, excused, port_busy, sh_commands, stop

README = (ROOT / "README.md").read_text()
FIXTURE_LOG = DATA / "fixtures" / "kube-apiserver-1.20" / "audit.log"


def sh_blocks() -> list[list[str]]:
    return [sh_commands(body) for lang, body in blocks(README) if lang == "sh"]


def _clone(into: Path) -> Path:
    """What `git clone` of the working tree gives the page: the package, the page, tests/data."""
    clone = into / "auditsink"
    clone.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, clone / name)
    shutil.copytree(ROOT / "src", clone / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(DATA, clone / "tests" / "data")  # the page's examples read it
    return clone


def test_readme_opens_with_two_commands() -> None:
    first, second = sh_blocks()[:2]
    assert len(first) == 1 and len(second) == 1
    # One installs and starts serve on the defaults; one installs the test extras and runs
    # the suite exactly as .ci/run does.
    assert first[0] == ("python3 -m venv .venv && .venv/bin/pip install -e . "
                        "&& .venv/bin/auditsink serve")
    ci = (ROOT / ".ci" / "run").read_text()
    install, suite = second[0].rsplit(" && ", 1)
    assert install == "python3 -m venv .venv && .venv/bin/pip install -e '.[test]'"
    # .ci/run adds the dev extra (ruff, mypy; README, Tests) to the test extras.
    assert ".venv/bin/python -m pip install --quiet -e '.[test,dev]'" in ci
    assert ci.rstrip().splitlines()[-1] == suite == ".venv/bin/python -m pytest"
    # Before any `auditsink ...` line, the page says how to reach it.
    intro = README[: README.index("auditsink query")]
    assert "source .venv/bin/activate" in intro and ".venv/bin/auditsink" in intro


def test_every_readme_block(tmp_path: Path) -> None:
    if port_busy(8080) or port_busy(8081):
        pytest.skip("ports 8080/8081 are in use; the README's defaults need them")
    box = Sandbox(tmp_path)
    clone = _clone(box.cwd)
    todo = [c for block in sh_blocks() for c in block]
    done: list[str] = []

    def ran(command: str) -> None:
        done.append(command)

    def run(command: str) -> Any:
        result = box.run(command, cwd=clone)
        assert result.returncode == 0, (command, result.stdout)
        ran(command)
        return result

    # The quick start: a fresh venv, the package, `auditsink serve` on 8080/8081.
    quick, _tests, install, demo, *_ = sh_blocks()
    server = box.start(quick[0], "127.0.0.1:8081", cwd=clone, timeout=600)
    stop(server)
    ran(quick[0])
    # The same, step by step; this server answers the rest of the page.
    server = box.start("\n".join(install), "127.0.0.1:8081", cwd=clone, timeout=300)
    done.extend(install)
    try:
        # The demo event: stored once, under its own cluster, printed as the page says.
        (send,) = demo
        assert json.loads(run(send).stdout) == {"stored": 1, "duplicates": 0, "rejected": 0}
        printed = re.search(r"`serve` prints it as `([^`]+)`", README.replace("\n", " "))
        assert printed is not None
        line = " ".join(printed.group(1).split())
        box.wait(lambda: line in server.log_path.read_text(), "serve to print the demo event")
        shown = run("auditsink query --cluster readme-demo --format jsonl").stdout.splitlines()
        assert [json.loads(e)["auditID"] for e in shown] == ["readme-demo-0001"]

        # Data to ask questions about: the API server's rotated logs where the page looks.
        logs = box.root / "var" / "log" / "kubernetes" / "audit"
        logs.mkdir(parents=True)
        shutil.copy(FIXTURE_LOG, logs / "audit-2026-11-26T14-19-52.123.log")
        (logs / "audit-2026-11-27T08-00-00.000.log.gz").write_bytes(
            (DATA / "rules" / "audit.log.gz").read_bytes())
        (logs / "audit.log").write_bytes(b"")  # the current file, just rotated
        # Files the page's commands name as the reader's own.
        (clone / "audit.log").write_bytes(FIXTURE_LOG.read_bytes())
        (clone / "my_rules.yaml").write_text(
            "- rule: K8s Resource Created\n  enabled: false\n")
        (clone / "audit-policy.yaml").write_text((DATA / "seed" / "audit-policy.yaml").read_text())
        run("auditsink setup policy --preset detection > new-policy.yaml")
        (box.root / "var" / "log" / "auditsink").mkdir()  # where the file output writes

        # The import line first: the questions before it are about what it imports.
        todo.sort(key=lambda c: not c.startswith("auditsink import"))
        for command in todo:
            if command in done:
                continue
            if excused(command):
                continue
            if command.startswith("auditsink serve"):
                # Another serve beside the page's one: same flags, its own ports and store.
                listen, api = free_port(), free_port()
                extra = box.start(f"{command} --listen 127.0.0.1:{listen} --api-listen "
                                  f"127.0.0.1:{api} --store sqlite:///second.db",
                                  f"127.0.0.1:{api}", cwd=clone)
                stop(extra)
                ran(command)
                continue
            result = run(command)
            if command.startswith("auditsink import"):
                lines = FIXTURE_LOG.read_bytes().count(b"\n")
                (rotated,) = logs.glob("*.gz")
                trace = gzip.decompress(rotated.read_bytes()).count(b"\n")
                # Both rotated files and the current one, in time order.
                assert f"imported {lines + trace} events" in result.stdout, result.stdout
            elif command.startswith("curl") and "8081" in command:
                assert result.stdout.startswith("{"), (command, result.stdout)
            elif command.startswith(("auditsink query", "auditsink show", "auditsink stats")):
                assert result.stdout.strip(), command
    finally:
        stop(server)
    missing = [c for c in todo if c not in done and not excused(c)]
    assert not missing, f"README commands neither run nor excused: {missing}"
    assert len(done) >= 20
