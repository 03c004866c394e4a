"""docs/setup.md, run: every shell block that can run on one machine, in page order, with the
page's promised output compared with what the commands print (tests/docs_shell.py).

The machine is a kubeadm control-plane node in a sandbox: ``/etc/kubernetes/manifests`` holds
kubeadm's kube-apiserver manifest (tests/setup/data), and the page's paths under ``/etc``,
``/var`` and ``/opt`` live in the sandbox. Where the page relies on something this machine
cannot run, the test stands in for it and says so: ``systemctl enable --now auditsink`` is the
unit's own ExecStart started in the background, and the seed example's "auditsink serve with no
authentication" is ``auditsink serve`` on its defaults.
"""

from __future__ import annotations

import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest

from conftest import ROOT, SHARED
from docs_shell import (
    Sandbox, blocks, console_commands, excused, port_busy, rewrite, sh_commands, stop,
)

PAGE = ROOT / "docs" / "setup.md"
MANIFEST = Path(__file__).parent / "data" / "kube-apiserver.yaml"


def test_every_setup_block(tmp_path: Path) -> None:
    if not (SHARED / "fixtures").exists():
        pytest.skip(f"{SHARED} is absent: the page's examples read ../shared")
    busy = [p for p in (8080, 8081, 8443) if port_busy(p)]
    if busy:
        pytest.skip(f"ports {busy} are in use; the page's examples use them")
    box = Sandbox(tmp_path)
    # A kubeadm node: the API server's static pod manifest, and the usual directories.
    manifests = box.root / "etc" / "kubernetes" / "manifests"
    manifests.mkdir(parents=True)
    shutil.copy(MANIFEST, manifests / "kube-apiserver.yaml")
    for path in ("usr/local/bin", "etc/systemd/system", "var/lib/auditsink"):
        (box.root / path).mkdir(parents=True, exist_ok=True)
    page = PAGE.read_text()
    ran: list[str] = []
    servers = []
    try:
        for index, (lang, body) in enumerate(blocks(page)):
            if lang == "sh":
                for command in sh_commands(body):
                    if excused(command):
                        continue
                    result = box.run(command)
                    assert result.returncode == 0, (command, result.stdout)
                    ran.append(command)
            elif lang == "console":
                for command in console_commands(body, index):
                    if excused(command.text):
                        continue
                    if command.text.startswith("curl") and "8443" in command.text:
                        # `systemctl enable --now auditsink`: the unit's ExecStart.
                        servers.append(_start_unit(box))
                    if command.text == "auditsink doctor --webhook-config audit-webhook.yaml":
                        # "against an auditsink serve with no authentication"
                        for server in servers:
                            stop(server)
                        servers = [box.start("auditsink serve", "127.0.0.1:8081")]
                    box.check(command)
                    ran.append(command.text)
            elif lang == "" and body.startswith("auditsink serve --listen 127.0.0.1:8443"):
                # "The unit runs:" the unit's ExecStart, as written in the unit.
                unit = (box.root / "etc/systemd/system/auditsink.service").read_text()
                (exec_start,) = re.findall(r"^ExecStart=(.*)$", unit, re.M)
                assert body.strip() == exec_start.replace("/usr/local/bin/auditsink", "auditsink")
    finally:
        for server in servers:
            stop(server)
    if box.updates:
        rewrite(PAGE, box.updates)
        pytest.skip("AUDITSINK_UPDATE_DOCS=1: docs/setup.md rewritten from the commands' output")
    # The kubeadm steps changed the manifest and kept the original, once.
    (backup,) = manifests.glob(".kube-apiserver.yaml.*.bak")
    assert backup.read_text() == MANIFEST.read_text()
    assert len(ran) >= 25, ran


def _start_unit(box: Sandbox) -> object:
    unit = (box.root / "etc/systemd/system/auditsink.service").read_text()
    (exec_start,) = re.findall(r"^ExecStart=(.*)$", unit, re.M)
    argv = shlex.split(exec_start)
    assert argv[0] == "/usr/local/bin/auditsink"  # the symlink to a venv the test did not make
    command = shlex.join([sys.executable, "-m", "auditsink", *argv[1:]])
    return box.start(command, "127.0.0.1:8443")
