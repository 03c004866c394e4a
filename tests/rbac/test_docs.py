"""docs/rbac.md's worked example, run: every command of it works, and every output it shows
(marked ``<!-- output of: COMMAND -->``) is what the command prints today."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, shared_path

DOC = (ROOT / "docs" / "rbac.md").read_text()
EXAMPLE = DOC.split("## A worked example", 1)[1].split("\n## ", 1)[0]
OUTPUTS = re.findall(r"<!-- output of: (.*?) -->\n```\w*\n(.*?)```", EXAMPLE, re.S)


def _shell(command: str, cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, (command, done.stderr)
    return done.stdout


def test_worked_example(tmp_path: Path) -> None:
    # A clone beside ../shared, as the doc's relative paths assume; its own store.
    (tmp_path / "shared").symlink_to(shared_path())
    clone = tmp_path / "clone"
    clone.mkdir()
    (clone / "tests").symlink_to(ROOT / "tests")
    commands = [line for block in re.findall(r"```sh\n(.*?)```", EXAMPLE, re.S)
                for line in block.splitlines() if line.strip()]
    assert commands[0].startswith("auditsink import ") and len(commands) == 4
    for command in commands:
        _shell(command, clone)
    assert len(OUTPUTS) == 3
    for command, shown in OUTPUTS:
        assert _shell(command, clone) == shown, command
