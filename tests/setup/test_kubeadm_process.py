"""``auditsink setup kubeadm`` as a process: both backends by default, a diff that is exactly
what ``--apply`` then writes, idempotent, and every earlier manifest kept in its own backup."""

from __future__ import annotations

import difflib
import subprocess
import sys
from pathlib import Path

import yaml

FIXTURE = Path(__file__).parent / "data" / "kube-apiserver.yaml"


def setup_kubeadm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "auditsink", "setup", "kubeadm", *args],
                          capture_output=True, text=True, timeout=60)


def flags_of(path: Path) -> dict[str, str]:
    command = yaml.safe_load(path.read_text())["spec"]["containers"][0]["command"][1:]
    return dict(arg.split("=", 1) for arg in command)


def test_reviewed_diff_is_what_apply_writes(tmp_path: Path) -> None:
    manifest = tmp_path / "kube-apiserver.yaml"
    manifest.write_text(FIXTURE.read_text())
    flags = ["--batch-max-size", "100"]
    review = setup_kubeadm(str(manifest), *flags)
    assert review.returncode == 0, review.stderr
    assert "run the same command with --apply" in review.stderr
    applied = setup_kubeadm(str(manifest), *flags, "--apply")
    assert applied.returncode == 0, applied.stderr
    diff = "".join(difflib.unified_diff(
        FIXTURE.read_text().splitlines(keepends=True),
        manifest.read_text().splitlines(keepends=True),
        fromfile=f"a/{str(manifest).lstrip('/')}", tofile=f"b/{str(manifest).lstrip('/')}"))
    assert diff == review.stdout
    # Both backends, the log one with the rotation CIS scanners require.
    flags_now = flags_of(manifest)
    assert flags_now["--audit-webhook-config-file"] == "/etc/kubernetes/audit/webhook.yaml"
    assert flags_now["--audit-log-path"] == "/var/log/kubernetes/audit/audit.log"
    assert (int(flags_now["--audit-log-maxage"]), int(flags_now["--audit-log-maxbackup"]),
            int(flags_now["--audit-log-maxsize"])) >= (30, 10, 100)
    volumes = yaml.safe_load(manifest.read_text())["spec"]["volumes"]
    assert {"hostPath": {"path": "/var/log/kubernetes/audit", "type": "DirectoryOrCreate"},
            "name": "audit-log"} in volumes


def test_apply_twice_then_differently_keeps_every_version(tmp_path: Path) -> None:
    manifest = tmp_path / "kube-apiserver.yaml"
    manifest.write_text(FIXTURE.read_text())
    first = setup_kubeadm(str(manifest), "--apply")
    assert first.returncode == 0, first.stderr
    once = manifest.read_text()
    again = setup_kubeadm(str(manifest), "--apply")
    assert again.returncode == 0 and "nothing to do" in again.stderr
    assert manifest.read_text() == once
    (original,) = tmp_path.glob(".*.bak")
    assert original.read_text() == FIXTURE.read_text()
    changed = setup_kubeadm(str(manifest), "--apply", "--initial-backoff", "5s")
    assert changed.returncode == 0, changed.stderr
    backups = sorted(tmp_path.glob(".*.bak"))
    assert len(backups) == 2 and original in backups
    assert original.read_text() == FIXTURE.read_text()  # the original is never overwritten
    assert {b.read_text() for b in backups} == {FIXTURE.read_text(), once}
    # The kubelet runs every non-dot file in the directory: still only one API server.
    assert [p.name for p in tmp_path.glob("[!.]*")] == ["kube-apiserver.yaml"]


def test_no_log_backend(tmp_path: Path) -> None:
    result = setup_kubeadm(str(FIXTURE), "--no-log-backend")
    assert result.returncode == 0, result.stderr
    added = [line for line in result.stdout.splitlines() if line.startswith("+    - --audit")]
    assert added == ["+    - --audit-policy-file=/etc/kubernetes/audit/policy.yaml",
                     "+    - --audit-webhook-config-file=/etc/kubernetes/audit/webhook.yaml"]
    low = setup_kubeadm(str(FIXTURE), "--log-maxbackup", "3")
    assert low.returncode == 0 and "--audit-log-maxbackup=3 < 10: CIS scanners" in low.stderr
