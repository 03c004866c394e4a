"""Check 7: the audit policy, as kube-apiserver loads it."""

from __future__ import annotations

from pathlib import Path

from auditsink.admit.shadow import find_shadowed
from auditsink.admit.spec import parse_policy
from auditsink.doctor.report import (
    ERROR,
    OK,
    WARNING,
    Finding,
)

# -- 7. the audit policy ---------------------------------------------------------------------------


def check_policy(path: str | Path) -> list[Finding]:
    """Validate like kube-apiserver (file:line), and warn when the policy records nothing."""
    file = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return [Finding(ERROR, "policy", f"{file}: cannot read: {exc.strerror}")]
    spec, problems = parse_policy(data, file)
    found = [Finding(ERROR if p.severity == "error" else WARNING, "policy", str(p))
             for p in sorted(problems, key=lambda p: p.line or 0)]
    if spec is None:
        found.append(Finding(ERROR, "policy", f"{file}: kube-apiserver refuses this policy and "
                             "does not start", f"`auditsink policy check {file}` after each fix"))
        return found
    first = spec.rules[0]
    catch_all = not (first.users or first.user_groups or first.verbs or first.resources
                     or first.namespaces or first.non_resource_urls)
    if all(rule.level == "None" for rule in spec.rules) or (catch_all and first.level == "None"):
        found.append(Finding(WARNING, "policy", f"{file}: records nothing: every request ends "
                             "at a level None rule, so the API server sends no events",
                             "`auditsink setup policy` writes a useful policy"))
    elif catch_all and len(spec.rules) > 1:
        found.append(Finding(WARNING, "policy", f"{file}:{first.line}: rules[0] ({first.level}) "
                             f"matches every request: the {len(spec.rules) - 1} rules after it "
                             "never apply", "move the catch-all rule to the end"))
    for shadow in find_shadowed(spec):
        if not (catch_all and shadow.by == 0):
            rule = spec.rules[shadow.rule]
            found.append(Finding(WARNING, "policy", f"{file}:{rule.line}: rules[{shadow.rule}] "
                                 f"can never match: {shadow.reason}"))
    found.append(Finding(OK, "policy", f"{file}: valid, {len(spec.rules)} rules"))
    return found
