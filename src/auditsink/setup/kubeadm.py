"""Add audit flags and a read-only ``/etc/kubernetes/audit`` mount to kubeadm's API server pod.

The manifest is round-tripped through PyYAML, keeping key order. kubeadm writes no comments and
uses the same layout PyYAML does, so the only changed lines are ours; comments added by hand
are lost (the patch says so). Applying twice changes nothing; an existing flag keeps its place
and gets the new value, so a seed-style ``/etc/kubernetes/pki/audit-policy.yaml`` is migrated.

``kubeadm upgrade`` regenerates this file: put the same settings into ``ClusterConfiguration``
(``apiServer.extraArgs``/``extraVolumes``) to keep them, see docs/setup.md.
"""

from __future__ import annotations

import difflib
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from auditsink.setup.files import SetupError

AUDIT_DIR = "/etc/kubernetes/audit"
_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+$")


@dataclass(frozen=True)
class AuditFlags:
    """The kube-apiserver audit settings to put into the manifest."""

    policy_file: str = f"{AUDIT_DIR}/policy.yaml"
    webhook_config_file: str = f"{AUDIT_DIR}/webhook.yaml"
    batch_max_size: int | None = None
    initial_backoff: str | None = None
    host_dir: str = AUDIT_DIR
    volume_name: str = "audit"

    def flags(self) -> dict[str, str]:
        """``--name`` -> value, validated the way kube-apiserver parses them."""
        if self.batch_max_size is not None and self.batch_max_size <= 0:
            raise SetupError("--audit-webhook-batch-max-size must be > 0")
        if self.initial_backoff is not None and not _DURATION.match(self.initial_backoff):
            raise SetupError(
                "--audit-webhook-initial-backoff must be a Go duration like 10s or 1m30s, "
                f"not {self.initial_backoff!r}"
            )
        for path in (self.policy_file, self.webhook_config_file):
            if not path.startswith(self.host_dir.rstrip("/") + "/"):
                raise SetupError(
                    f"{path} is outside {self.host_dir}, "
                    "the directory mounted into the API server pod"
                )
        out = {
            "--audit-policy-file": self.policy_file,
            "--audit-webhook-config-file": self.webhook_config_file,
        }
        if self.batch_max_size is not None:
            out["--audit-webhook-batch-max-size"] = str(self.batch_max_size)
        if self.initial_backoff is not None:
            out["--audit-webhook-initial-backoff"] = self.initial_backoff
        return out


@dataclass
class Patch:
    """The patched manifest and what the reader should know about it."""

    original: str
    text: str
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """False when the manifest already had exactly these settings."""
        return self.text != self.original

    def diff(self, path: str = "kube-apiserver.yaml") -> str:
        """A unified diff, empty when nothing changes."""
        return "".join(
            difflib.unified_diff(
                self.original.splitlines(keepends=True),
                self.text.splitlines(keepends=True),
                fromfile=f"a/{path.lstrip('/')}",
                tofile=f"b/{path.lstrip('/')}",
            )
        )


def _dump(doc: Any) -> str:
    return yaml.safe_dump(
        doc, sort_keys=False, default_flow_style=False, width=1 << 16, allow_unicode=True
    )


def _container(doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict) or doc.get("kind") != "Pod":
        raise SetupError("expected a kube-apiserver static Pod manifest (kind: Pod)")
    for container in doc.get("spec", {}).get("containers", []):
        command = container.get("command") or []
        if container.get("name") == "kube-apiserver" or (
            command and command[0] == "kube-apiserver"
        ):
            return container  # type: ignore[no-any-return]
    raise SetupError("no kube-apiserver container in spec.containers")


def _insert_sorted(items: list[Any], item: Any, key: Any, start: int = 0) -> None:
    """Insert in order if ``items[start:]`` is sorted by ``key`` (kubeadm sorts), else append."""
    tail = [key(i) for i in items[start:]]
    if tail == sorted(tail):
        pos = start + sum(1 for k in tail if k < key(item))
        items.insert(pos, item)
    else:
        items.append(item)


def _set_flags(container: dict[str, Any], flags: dict[str, str]) -> None:
    command = container.get("command") or []
    # kubeadm puts flags in command after the binary; other generators use args.
    if command and command[0] == "kube-apiserver":
        target, start = command, 1
    else:
        target, start = container.setdefault("args", []), 0
    for name, value in flags.items():
        entry = f"{name}={value}"
        hits = [
            i
            for i, arg in enumerate(target)
            if isinstance(arg, str) and (arg == name or arg.startswith(name + "="))
        ]
        if hits:
            target[hits[0]] = entry
            for i in reversed(hits[1:]):
                del target[i]
        else:
            _insert_sorted(target, entry, lambda a: str(a).split("=", 1)[0], start)


def _set_volume(doc: dict[str, Any], container: dict[str, Any], audit: AuditFlags) -> None:
    mounts = container.setdefault("volumeMounts", [])
    mounts[:] = [
        m
        for m in mounts
        if m.get("name") != audit.volume_name and m.get("mountPath") != audit.host_dir
    ]
    # Read-only: the API server only reads the policy and kubeconfig, never writes there.
    mount = {"mountPath": audit.host_dir, "name": audit.volume_name, "readOnly": True}
    _insert_sorted(mounts, mount, lambda m: m.get("name", ""))
    volumes = doc["spec"].setdefault("volumes", [])
    volumes[:] = [v for v in volumes if v.get("name") != audit.volume_name]
    volume = {
        "hostPath": {"path": audit.host_dir, "type": "DirectoryOrCreate"},
        "name": audit.volume_name,
    }
    _insert_sorted(volumes, volume, lambda v: v.get("name", ""))


def patch_manifest(text: str, audit: AuditFlags | None = None) -> Patch:
    """Patch the manifest text; ``patch_manifest(patched).changed`` is False (idempotent)."""
    audit = audit or AuditFlags()
    flags = audit.flags()
    if audit.host_dir.rstrip("/") == "/etc/kubernetes/pki":
        raise SetupError(
            "use a dedicated directory, not /etc/kubernetes/pki: the API server's keys live there"
        )
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SetupError(f"the manifest is not valid YAML: {exc}") from None
    container = _container(doc)
    notes: list[str] = []
    if any(line.lstrip().startswith("#") for line in text.splitlines()):
        notes.append("comments in the manifest are not kept (PyYAML does not preserve them)")
    if _dump(doc) != text:
        notes.append("the manifest's layout was normalised (it was not written by kubeadm)")
    _set_flags(container, flags)
    _set_volume(doc, container, audit)
    return Patch(text, _dump(doc), notes)


def backup_path(path: Path) -> Path:
    """``/etc/kubernetes/manifests/kube-apiserver.yaml`` -> ``.../.kube-apiserver.yaml.bak``.

    The leading dot matters: the kubelet runs every file in the manifests directory except
    dot-files (``filepath.Glob(dir, "[^.]*")`` in pkg/kubelet/config/file.go), so a plain
    ``kube-apiserver.yaml.bak`` would start a second, conflicting API server pod.
    """
    return path.with_name(f".{path.name}.bak")


def apply_in_place(path: Path, audit: AuditFlags | None = None) -> Patch:
    """Patch ``path``, keeping the old version in :func:`backup_path`; no write if unchanged."""
    patch = patch_manifest(path.read_text(), audit)
    if patch.changed:
        shutil.copy2(path, backup_path(path))
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(patch.text)
        shutil.copymode(path, tmp)
        # Atomic rename: the kubelet never sees a half-written manifest.
        tmp.replace(path)
    return patch
