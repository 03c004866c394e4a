"""Ways to run auditsink itself: a static pod beside the API server, a Deployment, a systemd unit.

The static pod is the recommended shape for kubeadm clusters: kube-apiserver reaches it over
127.0.0.1 (or the node IP) without depending on cluster networking, DNS or the scheduler, which
all need a healthy API server first. The Deployment variant suits a central auditsink fed by
several clusters; its Service needs a stable address that every API server can reach.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

import yaml

from auditsink import __version__

DATA_DIR = "/var/lib/auditsink"
CONFIG_DIR = "/etc/auditsink"


@dataclass(frozen=True)
class RunOptions:
    """What every variant shares: image, address, TLS files and the credential file."""

    image: str = f"auditsink:{__version__}"
    listen_host: str = "127.0.0.1"
    port: int = 8443
    config_dir: str = CONFIG_DIR
    data_dir: str = DATA_DIR
    auth: str = "token"  # token | basic | mtls
    namespace: str = "kube-system"
    name: str = "auditsink"

    def command(self) -> list[str]:
        """The ``auditsink serve`` argv, with paths inside ``config_dir``/``data_dir``."""
        if self.auth not in ("token", "basic", "mtls"):
            raise ValueError(f"auth must be token, basic or mtls, not {self.auth!r}")
        host = f"[{self.listen_host}]" if ":" in self.listen_host else self.listen_host
        argv = [
            "auditsink",
            "serve",
            "--listen",
            f"{host}:{self.port}",
            "--tls-cert",
            f"{self.config_dir}/server.crt",
            "--tls-key",
            f"{self.config_dir}/server.key",
        ]
        if self.auth == "token":
            argv += ["--token-file", f"{self.config_dir}/tokens"]
        elif self.auth == "basic":
            argv += ["--basic-auth-file", f"{self.config_dir}/basic-auth"]
        else:
            argv += ["--client-ca", f"{self.config_dir}/ca.crt", "--allowed-cn", "kube-apiserver"]
        argv += ["--store", f"sqlite:///{self.data_dir}/auditsink.db"]
        return argv


def _dump(*docs: object) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False, width=1 << 16)


def _container(opts: RunOptions, probe_host: str | None) -> dict[str, object]:
    container: dict[str, object] = {
        "name": opts.name,
        "image": opts.image,
        "command": opts.command(),
        "ports": [{"containerPort": opts.port, "name": "https", "protocol": "TCP"}],
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"memory": "512Mi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"mountPath": opts.config_dir, "name": "config", "readOnly": True},
            {"mountPath": opts.data_dir, "name": "data"},
        ],
    }
    # A TCP probe: an HTTPS probe would need credentials the kubelet does not have.
    probe: dict[str, object] = {"tcpSocket": {"port": opts.port}, "periodSeconds": 10}
    if probe_host:
        probe["tcpSocket"] = {"host": probe_host, "port": opts.port}
    container["livenessProbe"] = {**probe, "initialDelaySeconds": 10, "failureThreshold": 6}
    container["readinessProbe"] = probe
    return container


def static_pod(opts: RunOptions | None = None) -> str:
    """A static pod for /etc/kubernetes/manifests on each control-plane node (hostNetwork)."""
    opts = opts or RunOptions()
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": opts.name,
            "namespace": opts.namespace,
            "labels": {"component": opts.name, "tier": "control-plane"},
        },
        "spec": {
            # The API server calls 127.0.0.1:PORT: the sink must share the node's network.
            "hostNetwork": True,
            "priorityClassName": "system-node-critical",
            # root reads the 0600 files the generators write (the image's own user is 10001);
            # the container drops all capabilities.
            "securityContext": {"runAsUser": 0, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [_container(opts, opts.listen_host)],
            "volumes": [
                {"name": "config", "hostPath": {"path": opts.config_dir, "type": "Directory"}},
                {"name": "data", "hostPath": {"path": opts.data_dir, "type": "DirectoryOrCreate"}},
            ],
        },
    }
    return _dump(pod)


def deployment(opts: RunOptions | None = None, storage: str = "10Gi") -> str:
    """A Secret-mounted Deployment (one replica: SQLite has one writer), Service and PVC."""
    opts = opts or RunOptions(listen_host="0.0.0.0", namespace="auditsink")
    labels = {"app.kubernetes.io/name": opts.name}
    meta = {"name": opts.name, "namespace": opts.namespace, "labels": labels}
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {**meta, "name": f"{opts.name}-data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": storage}}},
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "selector": labels,
            "ports": [
                {"name": "https", "port": opts.port, "targetPort": "https", "protocol": "TCP"}
            ],
        },
    }
    deploy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": 1,
            # Recreate: two pods must never write the same SQLite file on a RWO volume.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 10001,
                        "fsGroup": 10001,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [_container(opts, None)],
                    "volumes": [
                        # kubectl -n NS create secret generic auditsink-config --from-file=DIR
                        {
                            "name": "config",
                            "secret": {"secretName": f"{opts.name}-config", "defaultMode": 0o440},
                        },
                        {
                            "name": "data",
                            "persistentVolumeClaim": {"claimName": f"{opts.name}-data"},
                        },
                    ],
                },
            },
        },
    }
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": opts.namespace}}
    return _dump(namespace, pvc, service, deploy)


def systemd_unit(
    opts: RunOptions | None = None, executable: str = "/usr/local/bin/auditsink"
) -> str:
    """A hardened systemd service for running auditsink on the control-plane host itself."""
    opts = opts or RunOptions()
    argv = [executable, *opts.command()[1:]]
    return f"""[Unit]
Description=auditsink: kube-apiserver audit webhook backend
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart={shlex.join(argv)}
Restart=always
RestartSec=2
User=auditsink
Group=auditsink
StateDirectory=auditsink
ConfigurationDirectory=auditsink
# Credentials rotate by rewriting the token file; SIGHUP reloads without dropping connections.
ExecReload=/bin/kill -HUP $MAINPID
# One descriptor per connection: the default soft limit (1,024) is a few hundred idle clients
# (docs/security.md). auditsink also raises its soft limit to the hard one at start.
LimitNOFILE=65536
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
LockPersonality=yes
ReadWritePaths={opts.data_dir}

[Install]
WantedBy=multi-user.target
"""
