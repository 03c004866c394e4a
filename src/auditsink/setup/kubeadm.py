"""Add audit flags and their mounts to kubeadm's API server pod: both backends by default.

The webhook backend sends events to auditsink; the log backend keeps the API server's own
rotated file beside it (``/var/log/kubernetes/audit``), which CIS benchmark scanners check
(kube-bench 1.2.16-1.2.19, Checkov CKV_K8S_91-94: a path, maxage >= 30, maxbackup >= 10,
maxsize >= 100) and which still holds the trail while auditsink is down.

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
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from auditsink.setup.files import SetupError

AUDIT_DIR = "/etc/kubernetes/audit"
LOG_PATH = "/var/log/kubernetes/audit/audit.log"
# The CIS Kubernetes Benchmark's minimums for the log backend (1.2.17-1.2.19).
CIS_LOG_MINIMUMS = {"maxage": 30, "maxbackup": 10, "maxsize": 100}
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
    # The log backend, on unless --no-log-backend; log_path None: the manifest's own
    # --audit-log-path if it has one, else LOG_PATH.
    log_backend: bool = True
    log_path: str | None = None
    log_maxage: int = CIS_LOG_MINIMUMS["maxage"]
    log_maxbackup: int = CIS_LOG_MINIMUMS["maxbackup"]
    log_maxsize: int = CIS_LOG_MINIMUMS["maxsize"]
    log_volume_name: str = "audit-log"

    @property
    def log_dir(self) -> str | None:
        """The host directory the log backend writes into (mounted read-write)."""
        if not self.log_backend:
            return None
        return (self.log_path or LOG_PATH).rsplit("/", 1)[0] or "/"

    def below_cis(self) -> list[str]:
        """The rotation settings a CIS scanner would fail, e.g.
        ``['--audit-log-maxage=7 < 30']``."""
        if not self.log_backend:
            return []
        values = {"maxage": self.log_maxage, "maxbackup": self.log_maxbackup,
                  "maxsize": self.log_maxsize}
        return [f"--audit-log-{name}={values[name]} < {minimum}"
                for name, minimum in CIS_LOG_MINIMUMS.items() if values[name] < minimum]

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
        out = {"--audit-policy-file": self.policy_file}
        if self.log_backend:
            log_path = self.log_path or LOG_PATH
            if not log_path.startswith("/") or log_path.endswith("/"):
                raise SetupError(
                    f"--audit-log-path must be an absolute file path, not {log_path!r}")
            if self.log_dir == self.host_dir.rstrip("/"):
                raise SetupError(
                    f"the audit log cannot go into {self.host_dir}: that directory is mounted "
                    "read-only; use its own directory (default /var/log/kubernetes/audit)"
                )
            for name in ("maxage", "maxbackup", "maxsize"):
                if getattr(self, f"log_{name}") < 0:
                    raise SetupError(f"--audit-log-{name} must be >= 0")
            out.update({
                "--audit-log-path": log_path,
                "--audit-log-maxage": str(self.log_maxage),
                "--audit-log-maxbackup": str(self.log_maxbackup),
                "--audit-log-maxsize": str(self.log_maxsize),
            })
        out["--audit-webhook-config-file"] = self.webhook_config_file
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
    log_dir: str | None = None  # where the API server's own log goes (None: no log backend)

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
            return container
    raise SetupError("no kube-apiserver container in spec.containers")


def _insert_sorted(items: list[Any], item: Any, key: Any, start: int = 0) -> None:
    """Insert in order if ``items[start:]`` is sorted by ``key`` (kubeadm sorts), else append."""
    tail = [key(i) for i in items[start:]]
    if tail == sorted(tail):
        pos = start + sum(1 for k in tail if k < key(item))
        items.insert(pos, item)
    else:
        items.append(item)


def _flag_value(container: dict[str, Any], name: str) -> str | None:
    """The value of ``--name=value`` in the container's command or args, else None."""
    for arg in [*(container.get("command") or []), *(container.get("args") or [])]:
        if isinstance(arg, str) and arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


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


def _set_volume(doc: dict[str, Any], container: dict[str, Any], name: str, host_dir: str,
                read_only: bool) -> None:
    mounts = container.setdefault("volumeMounts", [])
    # A mount of the same directory spelt with a trailing slash is the same mount.
    mounts[:] = [m for m in mounts if m.get("name") != name
                 and str(m.get("mountPath", "")).rstrip("/") != host_dir.rstrip("/")]
    mount: dict[str, Any] = {"mountPath": host_dir, "name": name}
    if read_only:
        mount["readOnly"] = True
    _insert_sorted(mounts, mount, lambda m: m.get("name", ""))
    volumes = doc["spec"].setdefault("volumes", [])
    volumes[:] = [v for v in volumes if v.get("name") != name]
    volume = {"hostPath": {"path": host_dir, "type": "DirectoryOrCreate"}, "name": name}
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
    if audit.log_backend and audit.log_path is None:
        # Keep the log where an earlier setup (or a CIS hardening guide) already put it.
        existing = _flag_value(container, "--audit-log-path")
        if existing and existing != "-":
            audit = replace(audit, log_path=existing)
            flags = audit.flags()
            if existing != LOG_PATH:
                notes.append(f"keeping the manifest's --audit-log-path={existing}")
    if any(line.lstrip().startswith("#") for line in text.splitlines()):
        notes.append("comments in the manifest are not kept (PyYAML does not preserve them)")
    if _dump(doc) != text:
        notes.append("the manifest's layout was normalised (it was not written by kubeadm)")
    _set_flags(container, flags)
    # Read-only: the API server only reads the policy and kubeconfig, never writes there.
    _set_volume(doc, container, audit.volume_name, audit.host_dir, read_only=True)
    if audit.log_dir:
        # Read-write: the log backend writes and rotates its files there.
        _set_volume(doc, container, audit.log_volume_name, audit.log_dir, read_only=False)
    notes.extend(
        f"{finding}: CIS scanners (kube-bench 1.2.17-1.2.19) will flag it"
        for finding in audit.below_cis()
    )
    return Patch(text, _dump(doc), notes, audit.log_dir)


def backup_path(path: Path, now: datetime | None = None) -> Path:
    """A backup name no earlier backup has: ``.kube-apiserver.yaml.20261126T141952Z.bak``.

    The leading dot matters: the kubelet runs every file in the manifests directory except
    dot-files (``filepath.Glob(dir, "[^.]*")`` in pkg/kubelet/config/file.go), so a plain
    ``kube-apiserver.yaml.bak`` would start a second, conflicting API server pod. The UTC
    timestamp (and a counter within one second) keeps every earlier version, the original
    manifest above all, however often ``--apply`` runs.
    """
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    candidate = path.with_name(f".{path.name}.{stamp}.bak")
    counter = 1
    while candidate.exists():
        candidate = path.with_name(f".{path.name}.{stamp}-{counter}.bak")
        counter += 1
    return candidate


def apply_in_place(path: Path, audit: AuditFlags | None = None) -> tuple[Patch, Path | None]:
    """Patch ``path``; returns the patch and the backup of the old version (None: unchanged)."""
    patch = patch_manifest(path.read_text(), audit)
    backup = None
    if patch.changed:
        backup = backup_path(path)
        # O_EXCL through "x": a backup is never replaced, even by a concurrent run.
        with open(backup, "x", encoding="utf-8") as fh:
            fh.write(patch.original)
        shutil.copystat(path, backup)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(patch.text)
        shutil.copymode(path, tmp)
        # Atomic rename: the kubelet never sees a half-written manifest.
        tmp.replace(path)
    return patch, backup
