"""Run the shell blocks of a Markdown page as a reader would paste them, on this one machine.

A ``sh`` block is a script (its lines run in one bash, so ``source`` and ``cd`` carry over); a
``console`` block is ``$ command`` lines, each followed by the output the page promises, which
must be what the command prints (stdout and stderr as a terminal shows them, interleaved).

Paths outside the sandbox are mapped into it, so that the pages' ``/etc/kubernetes/audit`` or
``~/.minikube`` steps run without touching the machine: ``/etc/``, ``/var/``, ``/opt/`` and
``/usr/local/`` live under ``ROOT``, ``~`` is ``HOME``, and ``../shared/`` is the real one.
Output is mapped back before it is compared, and what differs from run to run (generated
tokens, certificate dates, backup timestamps) is masked on both sides.

A command that cannot run here is excused by :data:`EXCUSED`, with the reason; a test fails on
any other command it cannot run, so a new page command is either run or excused by name.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from conftest import SHARED

# Commands (by a regular expression on the command as written) that cannot run on one machine.
EXCUSED: tuple[tuple[str, str], ...] = (
    (r"^docker ", "no container engine on this machine (the docker client has no daemon)"),
    (r"^systemctl ", "no systemd here; the test starts the unit's ExecStart instead"),
    (r"^useradd ", "would add a user account to this machine"),
    (r"^chown -R auditsink:", "needs the auditsink user that useradd would create"),
    (r"^python3 -m venv /opt/auditsink ", "a second install of the package: the README's "
     "quick start installs it into a fresh venv"),
    (r"^minikube ", "needs minikube and a VM"),
    (r"^kubectl ", "needs a cluster (tests/e2e runs the real kube-apiserver)"),
    (r"\| kubectl apply", "needs a cluster (tests/e2e runs the real kube-apiserver)"),
    (r"--kubeconfig ~/.kube/config", "needs a cluster's kubeconfig"),
    (r"--notify slack:https://hooks\.slack\.com", "posts to Slack (tests/notify covers it)"),
    (r"--forward http:https://collector\.example", "needs the collector at collector.example"),
    (r"^auditsink outputs replay siem", "needs an output named siem (docs/forward.md)"),
    (r"^auditsink tail -f", "follows forever"),
    (r"^\.venv/bin/python -m pytest$", "the whole suite, which this test is part of"),
    (r"^python3 -m venv \.venv && \.venv/bin/pip install -e '\.\[test\]'( && \.venv/bin/python "
     r"-m pytest)?$", "installs for and runs the whole suite, which this test is part of"),
)


def excused(command: str) -> str | None:
    """The reason ``command`` is not run, or None."""
    for pattern, reason in EXCUSED:
        if re.search(pattern, command):
            return reason
    return None


@dataclass
class Command:
    """One command of a page: as written, and (console blocks) the output promised."""

    text: str
    expected: str | None
    block: int


def blocks(markdown: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block, in page order."""
    return re.findall(r"^```(\w*)\n(.*?)^```", markdown, re.S | re.M)


def sh_commands(body: str) -> list[str]:
    """Commands of a ``sh`` block: continuations joined, comments dropped."""
    joined = body.replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            out.append(re.split(r"\s{2,}#", stripped)[0].strip())
    return out


def console_commands(body: str, block: int) -> list[Command]:
    """``$ command`` lines of a ``console`` block with the output lines that follow each."""
    commands: list[Command] = []
    lines = body.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].startswith("$ "):
            i += 1
            continue
        text = lines[i][2:]
        while text.endswith("\\") and i + 1 < len(lines):
            i += 1
            text = text[:-1] + " " + lines[i].strip()
        output = []
        i += 1
        while i < len(lines) and not lines[i].startswith("$ "):
            output.append(lines[i])
            i += 1
        commands.append(Command(" ".join(text.split()), "\n".join(output).rstrip("\n"), block))
    return commands


def _mask(text: str) -> str:
    text = re.sub(r"\b[A-Za-z0-9_-]{43}\b", "<TOKEN>", text)  # secrets.token_urlsafe(32)
    text = re.sub(r"\$2b\$\d\d\$[./A-Za-z0-9]{53}", "<BCRYPT>", text)
    text = re.sub(r"\d{8}T\d{6}Z(-\d+)?", "<STAMP>", text)
    text = re.sub(r"until\s+\d{4}-\d{2}-\d{2}", "until <DATE>", text)
    return text


class Sandbox:
    """A working directory, a fake root and a home for one page's commands."""

    def __init__(self, base: Path) -> None:
        self.cwd, self.root, self.home = base / "work", base / "root", base / "home"
        for path in (self.cwd, self.root, self.home):
            path.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "HOME": str(self.home), "PYTHONUNBUFFERED": "1",
                    "COLUMNS": "100",
                    "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        self.env.pop("VIRTUAL_ENV", None)
        # pip's cache stays the machine's: a sandboxed HOME would download every wheel again.
        self.env.setdefault("PIP_CACHE_DIR", os.path.expanduser("~/.cache/pip"))
        self.updates: list[tuple[str, str]] = []

    def into(self, text: str) -> str:
        """A page's command with its machine paths moved into the sandbox."""
        text = re.sub(r"(?<![\w.~/-])(/etc/|/var/|/opt/|/usr/local/)",
                      lambda m: f"{self.root}{m.group(1)}", text)
        text = re.sub(r"sqlite:////(etc|var|opt)/", lambda m: f"sqlite:///{self.root}/{m.group(1)}/",
                      text)
        text = re.sub(r"(?<![\w.-])~/", f"{self.home}/", text)
        return re.sub(r"(?<![\w.-])\.\./shared/", f"{SHARED}/", text)

    def back(self, text: str) -> str:
        """Output with the sandbox's paths as the page writes them."""
        text = text.replace(f"{self.root}/", "/").replace(f"{str(self.root).lstrip('/')}/", "")
        text = text.replace(f"{self.home}/", "~/").replace(f"{SHARED}/", "../shared/")
        return text.replace(f"{self.cwd}/", "")

    def run(self, command: str, cwd: Path | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run in bash, stderr merged into stdout as a terminal shows both."""
        return subprocess.run(["bash", "-c", self.into(command)], cwd=cwd or self.cwd,
                              env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=timeout)

    def check(self, command: Command, cwd: Path | None = None) -> None:
        """Run a console command and compare its output with the page's.

        With ``AUDITSINK_UPDATE_DOCS=1`` the output is kept in :attr:`updates` instead, for
        :func:`rewrite` to put into the page (then review the diff).
        """
        result = self.run(command.text, cwd)
        printed = self.back(result.stdout).rstrip("\n")
        if command.text.startswith("auditsink doctor") and "--format" not in command.text:
            printed = self._doctor_as_on_the_node(command.text, printed, cwd)
        got, want = _mask(printed), _mask(command.expected or "")
        if os.environ.get("AUDITSINK_UPDATE_DOCS") == "1":
            self.updates.append((command.expected or "", printed))
            return
        assert got == want, f"$ {command.text}\n--- the page says:\n{want}\n--- it prints:\n{got}"

    def _doctor_as_on_the_node(self, command: str, printed: str, cwd: Path | None) -> str:
        """doctor wraps its lines at 100 columns, so the sandbox's longer paths wrap them
        differently: render its findings again with the page's paths, as the node prints them."""
        from auditsink.cli.doctor import render
        from auditsink.doctor import Finding

        report = json.loads(self.run(f"{command} --format json", cwd).stdout)
        findings = [Finding(f["level"], f["check"], self.back(f["message"]),
                            self.back(f["remedy"])) for f in report["findings"]]
        rendered = render(findings)
        assert " ".join(printed.split()) == " ".join(rendered.split()), (printed, rendered)
        return rendered

    def start(self, script: str, health: str, cwd: Path | None = None,
              timeout: float = 180) -> subprocess.Popen[bytes]:
        """Run a script that ends in a server in the background, until it says it listens on
        ``health`` (HOST:PORT) and that accepts connections. The log line makes sure the port
        is this server's: the pages use fixed ports, which another process may want too."""
        marker = f"://{health} (Press CTRL+C"  # uvicorn, once the socket is bound
        log = open(self.cwd / f"server-{time.monotonic_ns()}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(["bash", "-c", self.into(script)], cwd=cwd or self.cwd,
                                env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        log.close()
        proc.log_path = Path(log.name)  # type: ignore[attr-defined]
        deadline = time.monotonic() + timeout
        host, port = health.rsplit(":", 1)
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"{script!r} exited: {Path(log.name).read_text()}")
            with socket.socket() as sock:
                if marker in Path(log.name).read_text(errors="replace") and (
                        sock.connect_ex((host, int(port))) == 0):
                    return proc
            if time.monotonic() > deadline:
                stop(proc)
                raise AssertionError(f"{script!r} did not listen on {health}: "
                                     f"{Path(log.name).read_text()}")
            time.sleep(0.1)


    @staticmethod
    def wait(predicate: Callable[[], bool], what: str, timeout: float = 30) -> None:
        """Poll ``predicate`` until it holds."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.1)


def rewrite(page: Path, updates: list[tuple[str, str]]) -> None:
    """Put the outputs :meth:`Sandbox.check` kept into ``page``, in page order."""
    text, cursor = page.read_text(), 0
    for old, new in updates:
        if not old:
            continue
        at = text.index(old, cursor)
        text = text[:at] + new + text[at + len(old):]
        cursor = at + len(new)
    page.write_text(text)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the script's whole process group (bash and the server it runs), then wait."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def port_busy(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
