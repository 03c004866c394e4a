"""``auditsink doctor``: read a webhook kubeconfig as kube-apiserver does and try it for real.

Each check appends :class:`Finding` s in the order the API server meets the problem: load the
kubeconfig, build the client, resolve and connect, shake hands, POST an empty EventList.
A failure that would stop the API server stops the checks after it, so the first error is the
one to fix. Credentials never appear in a finding.
"""

from __future__ import annotations

from pathlib import Path

from auditsink.doctor.kubeconfig import check_files, check_kubeconfig, check_transport
from auditsink.doctor.network import check_network
from auditsink.doctor.policy import check_policy
from auditsink.doctor.report import ERROR, OK, WARNING, Finding, Report

__all__ = ["ERROR", "OK", "WARNING", "Finding", "diagnose"]


def diagnose(webhook_config: str | Path, policy: str | Path | None = None,
             timeout: float = 5.0) -> list[Finding]:
    """Run every check in order; the policy is checked even when the kubeconfig fails."""
    report = Report()
    cfg = check_kubeconfig(webhook_config, report)
    if cfg is not None:
        check_transport(cfg, report)
        check_files(cfg, report)
        if not report.refused:
            check_network(cfg, report, timeout)
    if policy is not None:
        report.findings.extend(check_policy(policy))
    return report.findings
