"""Patching kubeadm's kube-apiserver manifest: clean diff, valid YAML, idempotent, in place."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from auditsink.setup.files import SetupError
from auditsink.setup.kubeadm import AuditFlags, apply_in_place, backup_path, patch_manifest

FIXTURE = Path(__file__).parent / "data" / "kube-apiserver.yaml"


@pytest.fixture()
def manifest() -> str:
    return FIXTURE.read_text()


def container(text: str) -> dict:  # type: ignore[type-arg]
    return yaml.safe_load(text)["spec"]["containers"][0]  # type: ignore[no-any-return]


def test_patch_adds_flags_mount_and_volume(manifest: str) -> None:
    patch = patch_manifest(manifest)
    assert patch.changed and patch.notes == []
    c = container(patch.text)
    assert "--audit-policy-file=/etc/kubernetes/audit/policy.yaml" in c["command"]
    assert "--audit-webhook-config-file=/etc/kubernetes/audit/webhook.yaml" in c["command"]
    assert c["command"][0] == "kube-apiserver"
    assert {"mountPath": "/etc/kubernetes/audit", "name": "audit", "readOnly": True} in c[
        "volumeMounts"
    ]
    volumes = yaml.safe_load(patch.text)["spec"]["volumes"]
    assert {
        "hostPath": {"path": "/etc/kubernetes/audit", "type": "DirectoryOrCreate"},
        "name": "audit",
    } in volumes
    # Everything else is untouched: only added lines in the diff.
    diff = patch.diff("/etc/kubernetes/manifests/kube-apiserver.yaml")
    body = [line for line in diff.splitlines()[2:] if not line.startswith("@@")]
    assert [line for line in body if line.startswith("-")] == []
    assert sorted(line for line in body if line.startswith("+")) == sorted(
        [
            "+    - --audit-log-maxage=30",
            "+    - --audit-log-maxbackup=10",
            "+    - --audit-log-maxsize=100",
            "+    - --audit-log-path=/var/log/kubernetes/audit/audit.log",
            "+    - --audit-policy-file=/etc/kubernetes/audit/policy.yaml",
            "+    - --audit-webhook-config-file=/etc/kubernetes/audit/webhook.yaml",
            "+    - mountPath: /etc/kubernetes/audit",
            "+      name: audit",
            "+      readOnly: true",
            "+    - mountPath: /var/log/kubernetes/audit",
            "+      name: audit-log",
            "+  - hostPath:",
            "+      path: /etc/kubernetes/audit",
            "+      type: DirectoryOrCreate",
            "+    name: audit",
            "+  - hostPath:",
            "+      path: /var/log/kubernetes/audit",
            "+      type: DirectoryOrCreate",
            "+    name: audit-log",
        ]
    )
    assert diff.startswith(
        "--- a/etc/kubernetes/manifests/kube-apiserver.yaml\n+++ b/etc/kubernetes/manifests/"
    )


def test_flags_keep_kubeadm_sorting(manifest: str) -> None:
    flags = container(
        patch_manifest(manifest, AuditFlags(batch_max_size=100, initial_backoff="5s")).text
    )["command"][1:]
    assert flags == sorted(flags)
    assert (
        "--audit-webhook-batch-max-size=100" in flags
        and "--audit-webhook-initial-backoff=5s" in flags
    )


def test_idempotent_and_replaces_values(manifest: str) -> None:
    once = patch_manifest(manifest, AuditFlags(batch_max_size=100)).text
    assert patch_manifest(once).text.count("--audit-log-path") == 1
    again = patch_manifest(once, AuditFlags(batch_max_size=100))
    assert not again.changed and again.diff() == ""
    changed = patch_manifest(once, AuditFlags(batch_max_size=50))
    assert (
        changed.diff().count("\n-") == 1
        and "+    - --audit-webhook-batch-max-size=50" in changed.diff()
    )


def test_migrates_the_seed_setup(manifest: str) -> None:
    # The seed article put both files in /etc/kubernetes/pki; the patch moves the flags.
    seed = manifest.replace(
        "    - --authorization-mode=Node,RBAC\n",
        "    - --authorization-mode=Node,RBAC\n"
        "    - --audit-policy-file=/etc/kubernetes/pki/audit-policy.yaml\n"
        "    - --audit-webhook-config-file=/etc/kubernetes/pki/audit-webhook.yaml\n",
    )
    c = container(patch_manifest(seed, AuditFlags(log_backend=False)).text)
    audit = [f for f in c["command"] if f.startswith("--audit")]
    assert audit == [
        "--audit-policy-file=/etc/kubernetes/audit/policy.yaml",
        "--audit-webhook-config-file=/etc/kubernetes/audit/webhook.yaml",
    ]
    # Kept in place (after --authorization-mode) rather than moved.
    assert c["command"].index(audit[0]) == c["command"].index("--authorization-mode=Node,RBAC") + 1


def test_comments_and_layout_are_reported(manifest: str) -> None:
    patch = patch_manifest("# edited by hand\n" + manifest)
    assert any("comments" in note for note in patch.notes)
    assert any("normalised" in note for note in patch.notes)


@pytest.mark.parametrize(
    ("audit", "message"),
    [
        (AuditFlags(batch_max_size=0), "must be > 0"),
        (AuditFlags(initial_backoff="10"), "Go duration"),
        (AuditFlags(policy_file="/tmp/policy.yaml"), "outside /etc/kubernetes/audit"),
        (
            AuditFlags(
                host_dir="/etc/kubernetes/pki",
                policy_file="/etc/kubernetes/pki/p.yaml",
                webhook_config_file="/etc/kubernetes/pki/w.yaml",
            ),
            "not /etc/kubernetes/pki",
        ),
    ],
)
def test_bad_settings(manifest: str, audit: AuditFlags, message: str) -> None:
    with pytest.raises(SetupError, match=message):
        patch_manifest(manifest, audit)


def test_not_an_apiserver_manifest() -> None:
    with pytest.raises(SetupError, match="kind: Pod"):
        patch_manifest("apiVersion: v1\nkind: Service\n")
    with pytest.raises(SetupError, match="no kube-apiserver container"):
        patch_manifest("kind: Pod\nspec:\n  containers:\n  - name: etcd\n    command: [etcd]\n")
    with pytest.raises(SetupError, match="not valid YAML"):
        patch_manifest("kind: [Pod\n")


def test_apply_in_place_keeps_a_hidden_backup(tmp_path: Path, manifest: str) -> None:
    path = tmp_path / "kube-apiserver.yaml"
    path.write_text(manifest)
    path.chmod(0o600)
    patch, backup = apply_in_place(path)
    assert patch.changed and backup is not None
    assert re.fullmatch(r"\.kube-apiserver\.yaml\.\d{8}T\d{6}Z\.bak", backup.name)
    assert backup.read_text() == manifest
    assert (path.stat().st_mode & 0o777) == 0o600 and (backup.stat().st_mode & 0o777) == 0o600
    patched = path.read_text()
    assert apply_in_place(path) == (patch_manifest(patched), None)
    assert path.read_text() == patched
    # The kubelet ignores dot-files: nothing but the manifest is visible to it.
    assert sorted(p.name for p in tmp_path.glob("[!.]*")) == ["kube-apiserver.yaml"]


def test_backups_are_never_overwritten(tmp_path: Path, manifest: str) -> None:
    path = tmp_path / "kube-apiserver.yaml"
    path.write_text(manifest)
    backups = [apply_in_place(path, AuditFlags(batch_max_size=size))[1] for size in (1, 2, 3)]
    # Three applies within one second: three backups, the first one the original manifest.
    assert len({b for b in backups if b is not None}) == 3
    assert backups[0] is not None and backups[0].read_text() == manifest
    when = datetime(2026, 11, 26, 14, 19, 52, tzinfo=UTC)
    first = backup_path(path, when)
    assert first.name == ".kube-apiserver.yaml.20261126T141952Z.bak"
    first.write_text("earlier")
    assert backup_path(path, when).name == ".kube-apiserver.yaml.20261126T141952Z-1.bak"


def test_both_backends_with_cis_rotation(manifest: str) -> None:
    c = container(patch_manifest(manifest).text)
    flags = {f.split("=", 1)[0]: f.split("=", 1)[1] for f in c["command"][1:]}
    # What kube-bench 1.2.16-1.2.19 (and Checkov CKV_K8S_91-94) check.
    assert flags["--audit-log-path"] == "/var/log/kubernetes/audit/audit.log"
    assert int(flags["--audit-log-maxage"]) >= 30
    assert int(flags["--audit-log-maxbackup"]) >= 10
    assert int(flags["--audit-log-maxsize"]) >= 100
    assert flags["--audit-webhook-config-file"] == "/etc/kubernetes/audit/webhook.yaml"
    # The log directory is writable; the config directory is not.
    assert {"mountPath": "/var/log/kubernetes/audit", "name": "audit-log"} in c["volumeMounts"]
    low = patch_manifest(manifest, AuditFlags(log_maxage=7))
    assert low.notes == ["--audit-log-maxage=7 < 30: CIS scanners (kube-bench 1.2.17-1.2.19) "
                         "will flag it"]


def test_no_log_backend_and_an_existing_log_path(manifest: str) -> None:
    c = container(patch_manifest(manifest, AuditFlags(log_backend=False)).text)
    assert not [f for f in c["command"] if f.startswith("--audit-log")]
    assert [m["name"] for m in c["volumeMounts"] if m["name"].startswith("audit")] == ["audit"]
    # A manifest hardened by hand keeps its log where it is, trailing-slash mount and all.
    hardened = patch_manifest(manifest, AuditFlags(log_backend=False, log_path=None)).text.replace(
        "    - --authorization-mode", "    - --audit-log-path=/var/log/apiserver/audit.log\n"
        "    - --authorization-mode")
    c = container(patch_manifest(hardened).text)
    assert "--audit-log-path=/var/log/apiserver/audit.log" in c["command"]
    assert {"mountPath": "/var/log/apiserver", "name": "audit-log"} in c["volumeMounts"]
    with pytest.raises(SetupError, match="mounted read-only"):
        patch_manifest(manifest, AuditFlags(log_path="/etc/kubernetes/audit/audit.log"))
