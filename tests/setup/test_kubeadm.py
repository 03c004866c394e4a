"""Patching kubeadm's kube-apiserver manifest: clean diff, valid YAML, idempotent, in place."""

from __future__ import annotations

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
            "+    - --audit-policy-file=/etc/kubernetes/audit/policy.yaml",
            "+    - --audit-webhook-config-file=/etc/kubernetes/audit/webhook.yaml",
            "+    - mountPath: /etc/kubernetes/audit",
            "+      name: audit",
            "+      readOnly: true",
            "+  - hostPath:",
            "+      path: /etc/kubernetes/audit",
            "+      type: DirectoryOrCreate",
            "+    name: audit",
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
    c = container(patch_manifest(seed).text)
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
    assert apply_in_place(path).changed
    assert backup_path(path) == tmp_path / ".kube-apiserver.yaml.bak"
    assert backup_path(path).read_text() == manifest
    assert (path.stat().st_mode & 0o777) == 0o600
    patched = path.read_text()
    assert not apply_in_place(path).changed
    assert path.read_text() == patched
    # The kubelet ignores dot-files: nothing but the manifest is visible to it.
    assert sorted(p.name for p in tmp_path.glob("[!.]*")) == ["kube-apiserver.yaml"]
