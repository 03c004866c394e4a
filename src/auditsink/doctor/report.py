"""What a doctor check produces: findings, and the shared constants."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

OK, WARNING, ERROR = "ok", "warning", "error"
EMPTY_EVENT_LIST = b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[]}\n'
SETUP_HTTPS = (
    "use https: `auditsink setup certs` and `auditsink setup webhook-config --new-token` write "
    "the certificates, this file and auditsink's token file (docs/setup.md)"
)
# Default Service ClusterIP ranges; an address in one is probably a Service, not a node.
SERVICE_RANGES = {
    "kubeadm/kind/minikube": ipaddress.ip_network("10.96.0.0/12"),
    "k3s/RKE2": ipaddress.ip_network("10.43.0.0/16"),
    "EKS": ipaddress.ip_network("10.100.0.0/16"),
    "EKS (alternative)": ipaddress.ip_network("172.20.0.0/16"),
    "GKE": ipaddress.ip_network("34.118.224.0/20"),
}
CLUSTER_NETWORK_WHY = (
    "kube-apiserver usually runs as a static pod with hostNetwork: it resolves names with the "
    "node's resolv.conf, not cluster DNS, and it must deliver events while CoreDNS, kube-proxy "
    "and the CNI are down or still starting (they need the API server first). "
    "Point the kubeconfig at an address the node reaches directly: 127.0.0.1 or the node IP with "
    "auditsink beside the API server (`auditsink setup manifests`), or a NodePort/LoadBalancer "
    "address, and put that address in the server certificate (`auditsink setup certs --host`)"
)



@dataclass(frozen=True)
class Finding:
    """One result: ``level`` ok/warning/error, the ``check`` it belongs to, and what to do."""

    level: str
    check: str
    message: str
    remedy: str = ""


@dataclass
class Report:
    """Findings so far; checks append to it and ask whether to go on."""

    findings: list[Finding] = field(default_factory=list)

    def add(self, level: str, check: str, message: str, remedy: str = "") -> None:
        self.findings.append(Finding(level, check, message, remedy))

    def errors_in(self, *checks: str) -> bool:
        return any(f.level == ERROR and f.check in checks for f in self.findings)

    @property
    def refused(self) -> bool:
        """Would client-go refuse to build the client? Then there is nothing to connect."""
        return self.errors_in("files", "credentials", "tls-config")
