"""``auditsink doctor``: check a webhook kubeconfig (and policy) by trying them for real."""

from __future__ import annotations

import json
import re
import sys
import textwrap

import click

from auditsink.cli.group import main
from auditsink.doctor import ERROR, OK, WARNING, Finding, diagnose

MARKS = {OK: "ok  ", WARNING: "warn", ERROR: "FAIL"}


def _wrap(line: str, width: int = 100, indent: int = 19) -> str:
    # Long remedies stay readable in a terminal; continuation lines align under the message,
    # and a `command` is never split, so it can be copied.
    glued = re.sub(r"`[^`]*`", lambda m: m.group(0).replace(" ", "\0"), line)
    text = textwrap.fill(glued, width, subsequent_indent=" " * indent, break_on_hyphens=False,
                         break_long_words=False)
    return text.replace("\0", " ")


def render(findings: list[Finding]) -> str:
    """One line per finding (``ok``/``warn``/``FAIL``, check, message), remedies, a summary."""
    lines = []
    for f in findings:
        lines.append(_wrap(f"{MARKS[f.level]}  {f.check:<12} {f.message}"))
        if f.remedy and f.level != OK:
            lines.append(_wrap(f"{'':<19}fix: {f.remedy}"))
    errors = sum(f.level == ERROR for f in findings)
    warnings = sum(f.level == WARNING for f in findings)
    if errors:
        lines.append(f"\n{errors} error(s), {warnings} warning(s): fix the first error, then run "
                     "doctor again.")
    else:
        verdict = "kube-apiserver can deliver audit events with this kubeconfig"
        lines += [
            f"\nNo errors, {warnings} warning(s): {verdict}. If none arrive:",
            "  - kube-apiserver needs both --audit-policy-file and --audit-webhook-config-file,",
            "    and both files mounted into its pod;",
            "  - it reads them only when it starts: restart it after a change;",
            "  - its log says \"Error in audit plugin 'webhook'\" when a send fails.",
        ]
    return "\n".join(lines)


@main.command()
@click.option("--webhook-config", "webhook_config", required=True,
              type=click.Path(dir_okay=False),
              help="The kubeconfig given to kube-apiserver --audit-webhook-config-file.")
@click.option("--policy", "policy", type=click.Path(dir_okay=False),
              help="The file given to --audit-policy-file (validated like the API server).")
@click.option("--timeout", type=float, default=5.0, show_default=True,
              help="Seconds for each connection and for the answer.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="text for people, json for machines.")
def doctor(webhook_config: str, policy: str | None, timeout: float, fmt: str) -> None:
    """Check the webhook kubeconfig as kube-apiserver reads it, then connect and POST an empty
    EventList to the server it names. Run it on the control-plane node. Exit 1 on errors."""
    findings = diagnose(webhook_config, policy, timeout)
    errors = sum(f.level == ERROR for f in findings)
    if fmt == "json":
        click.echo(json.dumps({
            "ok": errors == 0,
            "errors": errors,
            "warnings": sum(f.level == WARNING for f in findings),
            "findings": [{"level": f.level, "check": f.check, "message": f.message,
                          "remedy": f.remedy} for f in findings],
        }, indent=2))
    else:
        click.echo(render(findings))
    sys.exit(1 if errors else 0)
