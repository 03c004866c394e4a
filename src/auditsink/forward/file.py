"""``file``: one JSON document per line, appended to a file that is rotated by size and age,
rotated files gzipped, the newest ``keep`` of them kept.

Each batch is written with one ``write`` and fsynced before the cursor moves, so a line that
the cursor has passed is on disk; a crash between the two repeats the batch (at least once).
Rotated files are named like kube-apiserver's (``audit-2026-11-26T14-19-51.292.jsonl.gz``).
"""

from __future__ import annotations

import gzip
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any, ClassVar

from auditsink.forward.base import DeliveryError, Doc, Output, OutputConfig, Rejection


@dataclass
class FileConfig(OutputConfig):
    """Where and how to rotate."""

    path: str = ""
    rotate_bytes: int = 100 * 1024 * 1024   # rotate when the file would grow past this
    rotate_seconds: float = 0.0             # ... or is this old (0: never by age)
    keep: int = 10                          # rotated files kept (the oldest are deleted)
    compress: bool = True                   # gzip rotated files
    fsync: bool = True                      # fsync each batch before the cursor moves

    target_key: ClassVar[str] = "path"

    def check(self) -> str:
        if not self.path:
            return "path is required (the file to append to)"
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            return f"path {self.path!r}: directory {directory} does not exist"
        if self.keep < 0 or self.rotate_bytes < 0:
            return "keep and rotate_bytes must not be negative"
        return ""


def render(docs: Sequence[Doc]) -> bytes:
    """The lines of one batch.

    >>> render([Doc(None, b'{"a":1}'), Doc(None, b'{"b":2}')])  # type: ignore[arg-type]
    b'{"a":1}\\n{"b":2}\\n'
    """
    return b"".join(doc.body + b"\n" for doc in docs)


def rotated_name(path: str, when: float) -> str:
    """``/x/audit.jsonl`` at 2026-11-26 14:19:51.292 ->
    ``/x/audit-2026-11-26T14-19-51.292.jsonl``."""
    stem, ext = os.path.splitext(path)
    stamp = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H-%M-%S")
    return f"{stem}-{stamp}.{int(when * 1000) % 1000:03d}{ext}"


class FileOutput(Output):
    """Appends, rotates, compresses, prunes."""

    config_class = FileConfig

    def __init__(self, config: FileConfig) -> None:
        super().__init__(config)
        self.config: FileConfig = config
        self._file: IO[bytes] | None = None
        self._opened = 0.0

    def render(self, docs: Sequence[Doc]) -> bytes:
        return render(docs)

    def send(self, payload: bytes) -> Sequence[Rejection]:
        try:
            handle = self._open()
            size = handle.tell()
            if size and self._due(size + len(payload)):
                self.rotate()
                handle = self._open()
            handle.write(payload)
            handle.flush()
            if self.config.fsync:
                os.fsync(handle.fileno())
        except OSError as exc:
            self.close()
            raise DeliveryError(f"{self.config.path}: {exc.strerror or exc}") from None
        return ()

    def _open(self) -> IO[bytes]:
        if self._file is None:
            self._file = open(self.config.path, "ab")  # noqa: SIM115 - kept open between batches
            self._opened = time.time()  # age counts from when this process opened it
        return self._file

    def _due(self, size_after: int) -> bool:
        config = self.config
        if config.rotate_bytes and size_after > config.rotate_bytes:
            return True
        return bool(config.rotate_seconds) and time.time() - self._opened >= config.rotate_seconds

    def rotate(self) -> str:
        """Move the current file aside (gzipped) and prune old ones; returns the new name."""
        self.close()
        target = rotated_name(self.config.path, time.time())
        os.replace(self.config.path, target)
        if self.config.compress:
            with open(target, "rb") as src, gzip.open(target + ".gz.tmp", "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            os.replace(target + ".gz.tmp", target + ".gz")
            os.unlink(target)
            target += ".gz"
        self._prune()
        return target

    def rotated(self) -> list[str]:
        """Rotated files of this output, oldest first."""
        directory = os.path.dirname(os.path.abspath(self.config.path))
        stem, ext = os.path.splitext(os.path.basename(self.config.path))
        found = [os.path.join(directory, n) for n in os.listdir(directory)
                 if n.startswith(stem + "-") and (n.endswith(ext) or n.endswith(ext + ".gz"))
                 and not n.endswith(".tmp")]
        return sorted(found)

    def _prune(self) -> None:
        old = self.rotated()
        for path in old[: max(0, len(old) - self.config.keep)]:
            os.unlink(path)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __del__(self) -> None:  # pragma: no cover - a safety net; close() is the way
        handle: Any = getattr(self, "_file", None)
        if handle is not None:
            handle.close()
