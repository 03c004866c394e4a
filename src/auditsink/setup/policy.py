"""Audit policy presets for ``--audit-policy-file``, shipped as YAML in ``setup/presets/``.

- ``seed``: the Kubernetes documentation's example policy, the one the seed article uses.
- ``minimal``: writes at Metadata, reads and heartbeats dropped.
- ``detection``: the request bodies Falco-style rules need; secrets at Metadata only.
"""

from __future__ import annotations

from importlib import resources

from auditsink.setup.files import SetupError

PRESETS = ("seed", "minimal", "detection")


def policy_text(name: str) -> str:
    """The preset's YAML text: ``policy_text("minimal")`` -> ``"# preset: minimal. ..."``."""
    if name not in PRESETS:
        raise SetupError(f"unknown policy preset {name!r}; choose one of {', '.join(PRESETS)}")
    return (
        resources.files("auditsink.setup")
        .joinpath("presets", f"{name}.yaml")
        .read_text(encoding="utf-8")
    )
