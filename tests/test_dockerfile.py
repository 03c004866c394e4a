"""The Dockerfile, checked as far as this machine allows.

There is no container engine here (the docker client has no daemon), so the image itself is
never built by the tests. What is real: every file the Dockerfile copies exists and survives
.dockerignore, the build stage's ``pip wheel .`` on exactly that context makes a wheel, and
that wheel installed in a fresh venv runs the image's entrypoint with the command
``auditsink setup manifests`` gives the static pod, answering the API server over TLS.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import ssl
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import yaml

from auditsink.setup.manifests import RunOptions, static_pod
from conftest import ROOT, free_port

DOCKERFILE = (ROOT / "Dockerfile").read_text()
IGNORED = [
    line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def ignored(rel: str) -> bool:
    """Whether .dockerignore leaves ``rel`` (or a directory above it) out of the context."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in IGNORED:
        pattern = pattern.rstrip("/")
        for prefix in prefixes:
            if fnmatch.fnmatch(prefix, pattern) or (
                pattern.startswith("**/") and fnmatch.fnmatch(prefix.split("/")[-1], pattern[3:])
            ):
                return True
    return False


def context_copies() -> list[str]:
    """Sources of the COPY lines that read the build context (not ``--from`` a stage)."""
    sources = []
    for word, args in instructions():
        if word == "COPY" and "--from=" not in args:
            *srcs, _dest = shlex.split(args)
            sources.extend(srcs)
    return sources


def test_every_copy_source_exists_in_the_context() -> None:
    sources = context_copies()
    assert sources == ["pyproject.toml", "README.md", "src/"]
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not ignored(source.rstrip("/")), f"{source} is excluded by .dockerignore"
    # What the package needs at runtime is inside src/ and not ignored.
    assert not ignored("src/auditsink/rules/builtin/default.yaml")
    assert ignored("src/auditsink.egg-info") and ignored("src/auditsink/__pycache__")


def test_manifests_default_image_is_the_documented_build() -> None:
    docs = (ROOT / "docs" / "setup.md").read_text()
    (tag,) = re.findall(r"^docker build -t (\S+) \.$", docs, re.M)
    assert tag == RunOptions().image == "auditsink:0.1.0"
    assert f"docker build -t {tag} ." in DOCKERFILE
    assert ("ENTRYPOINT", '["auditsink"]') in instructions()
    # The static pod runs as root (0600 files), the image's own user is the Deployment's.
    assert ("USER", "10001:10001") in instructions()
    assert yaml.safe_load(static_pod())["spec"]["securityContext"]["runAsUser"] == 0


def _context(tmp: Path) -> Path:
    """The build context as docker would send it: the COPY'd files, minus .dockerignore."""
    ctx = tmp / "context"
    for source in context_copies():
        src = ROOT / source
        if src.is_dir():
            shutil.copytree(src, ctx / source, ignore=lambda d, names: [
                n for n in names
                if ignored(str((Path(d) / n).relative_to(ROOT)))
            ])
        else:
            ctx.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, ctx / source)
    return ctx


def test_built_wheel_runs_the_static_pods_command(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    wheels = tmp_path / "wheels"
    # The build stage: `pip wheel .` (dependencies come from the index; only ours is built).
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                            "--wheel-dir", str(wheels), str(ctx)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("auditsink-*.whl")
    venv = tmp_path / "image-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = subprocess.run([str(python), "-c", purelib],
                          capture_output=True, text=True, check=True).stdout.strip()
    # The dependencies are this test venv's (pip installs them in the image); auditsink itself
    # is only the wheel: a .pth appends the other site-packages *after* the venv's own.
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps",
                                "--no-index", str(wheel)], capture_output=True, text=True,
                               timeout=120)
    assert installed.returncode == 0, installed.stderr
    entrypoint = venv / "bin" / "auditsink"
    where = subprocess.run([str(python), "-c", "import auditsink; print(auditsink.__file__)"],
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(site), where
    # CMD ["--help"]
    helped = subprocess.run([str(entrypoint), "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "serve" in helped.stdout
    # The static pod's command, with /etc/auditsink and /var/lib/auditsink in tmp_path.
    config, data = tmp_path / "etc-auditsink", tmp_path / "var-lib-auditsink"
    data.mkdir()
    subprocess.run([str(entrypoint), "setup", "certs", "--host", "127.0.0.1", "--out", str(config)],
                   check=True, capture_output=True, timeout=60)
    (config / "tokens").write_text("image-test-token\n")
    port = free_port()
    opts = RunOptions(port=port, config_dir=str(config), data_dir=str(data))
    command = yaml.safe_load(static_pod(opts))["spec"]["containers"][0]["command"]
    assert command[0] == "auditsink"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "SQLITE_TMPDIR": str(data)}
    log = tmp_path / "serve.stderr"
    with open(log, "wb") as err:
        proc = subprocess.Popen([str(entrypoint), *command[1:], "--api-listen", "none"],
                                cwd=data, env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        ctx_tls = ssl.create_default_context(cafile=str(config / "ca.crt"))
        request = urllib.request.Request(
            f"https://127.0.0.1:{port}/?timeout=30s", method="POST",
            data=b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[]}',
            headers={"Content-Type": "application/json",
                     "Authorization": "Bearer image-test-token"})
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(request, context=ctx_tls, timeout=10) as answer:
                    assert answer.status == 200
                    assert json.loads(answer.read()) == {"stored": 0, "duplicates": 0,
                                                         "rejected": 0}
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert (data / "auditsink.db").exists()
