"""The README's commands work when pasted into a fresh shell (with the venv's bin on PATH)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, ServerProcess

README = (ROOT / "README.md").read_text()


def _blocks(lang: str = "sh") -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, re.S)


def _commands(block: str) -> list[str]:
    """Shell commands of a block, continuation lines joined, comments dropped."""
    joined = block.replace("\\\n", " ")
    return [line.split("  #")[0].strip() for line in joined.splitlines()
            if line.strip() and not line.startswith("#")]


def _shell(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)


def _port_busy(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_readme_commands(tmp_path: Path, fixtures_dir: Path) -> None:
    if _port_busy(8080) or _port_busy(8081):
        pytest.skip("ports 8080/8081 are in use; the README's defaults need them")
    server = ServerProcess(tmp_path)
    server.port, server.api_port = 8080, 8081
    # `auditsink serve` with the README's defaults (explicit flags name the same ports)
    server.start()
    try:
        send = next(c for b in _blocks() for c in _commands(b)
                    if c.startswith("curl") and "--data-binary" in c)
        result = _shell(send, tmp_path)
        assert result.returncode == 0 and '"stored": 1' in result.stdout, result
        assert "alice delete pods demo/web 200" in server.stdout_path.read_text()
        imported = _shell(f"auditsink import {fixtures_dir / 'audit.log'}", tmp_path)
        assert imported.returncode == 0, imported.stderr
        questions = next(b for b in _blocks() if "auditsink query" in b)
        ran = 0
        for command in _commands(questions):
            if " -f" in command or "/var/log" in command:
                continue  # follows forever / needs the user's own log files
            result = _shell(command, tmp_path)
            assert result.returncode == 0, (command, result.stderr)
            assert result.stdout.strip(), command
            ran += 1
        assert ran >= 5
        api = [c for b in _blocks() for c in _commands(b) if c.startswith("curl") and "8081" in c]
        for command in api:
            result = _shell(command, tmp_path)
            assert result.returncode == 0, (command, result.stderr)
            assert result.stdout.startswith("{"), (command, result.stdout)
        assert len(api) >= 4
    finally:
        server.stop()


def test_readme_test_command_is_what_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert ".venv/bin/python -m pytest" in README and ".venv/bin/python -m pytest" in ci
    installs: Any = [line for line in ci.splitlines() if "pip install" in line and "-e" in line]
    assert installs and "'.[test]'" in installs[0]
