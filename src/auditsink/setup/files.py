"""Writing generated files: all or nothing, never overwriting unless forced, keys private."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


class SetupError(Exception):
    """A generator cannot do what was asked; the message says why and what to do instead."""


def private(name: str) -> bool:
    """Files that hold secrets get mode 0600: ``ca.key`` -> True, ``ca.crt`` -> False.

    ``webhook.yaml`` holds the API server's credential in clear: kubeconfigs have no hashes.
    """
    return name.endswith(".key") or name in {"token", "tokens", "basic-auth", "webhook.yaml"}


def write_files(out: Path, files: Mapping[str, str | bytes], *, force: bool = False) -> list[Path]:
    """Write ``files`` (name -> content) into ``out``; refuse if any exists, unless ``force``."""
    targets = {name: out / name for name in files}
    existing = sorted(str(p) for p in targets.values() if p.exists())
    if existing and not force:
        # Check everything first so a refusal leaves no half-written set behind.
        raise SetupError(f"refusing to overwrite {', '.join(existing)} (use --force to replace)")
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, content in files.items():
        path = targets[name]
        data = content.encode() if isinstance(content, str) else content
        mode = 0o600 if private(name) else 0o644
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        written.append(path)
    return written
