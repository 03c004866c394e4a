"""Sender authentication: bearer tokens, basic auth (plain or bcrypt) and client-certificate CNs.

kube-apiserver authenticates to us with whatever its webhook kubeconfig holds (facts W11): a
client certificate, ``Authorization: Bearer <token>`` or ``Authorization: Basic <b64>``. Each
credential can name the cluster it belongs to, so one auditsink can serve several clusters.

File formats (``#`` comments and blank lines are ignored)::

    # token_file: one token per line, optionally with the cluster it authenticates
    3f9c0d6e0b1a4e27
    8d1e77a0c2f94b6b,prod-eu

    # basic_auth_file: user:password[:cluster]; the password may be a bcrypt hash
    apiserver:$2b$12$Jt0l3...:prod-eu
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import bcrypt

from auditsink.textsafe import cut

log = logging.getLogger(__name__)

Method = Literal["none", "token", "basic", "mtls"]

# Cluster names travel in URLs (/clusters/{name}), labels, logs and store keys: keep them
# boring. A superset of the DNS-1123 label (what kubeadm and most tools name clusters): upper
# case, "_" and "." are allowed too. Checked wherever a name comes from: the URL path, the
# token and basic-auth files, and client certificates.
CLUSTER_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")
CLUSTER_NAME_RULE = ("cluster name must be 1-63 letters, digits, '.', '_' or '-', "
                     "starting and ending with a letter or digit")
BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
# bcrypt reads at most 72 bytes (bcrypt >= 5 refuses more): a longer password can never match.
BCRYPT_MAX_PASSWORD = 72
_FAILED_CACHE_SIZE = 256
_RELOAD_CHECK_INTERVAL = 1.0
# Uncached bcrypt checks allowed per second (and burst) per client address: each costs
# 0.1-0.5 s of CPU, so without a cap, guessing passwords would burn the CPU. Per address, so
# that guesses from elsewhere cannot use up the real sender's checks (issue 17: one shared
# bucket made the API server's first login after a restart fail under a guessing attack).
_BCRYPT_RATE = 2.0
_BCRYPT_BURST = 4.0
_BCRYPT_ADDRESSES = 4096
_now = time.monotonic


class AuthConfigError(ValueError):
    """A credentials file is unreadable or malformed; the message names file and line."""


@dataclass(frozen=True, slots=True)
class AuthResult:
    """Who sent a request: the cluster it speaks for and how it proved it.

    ``subject`` is safe to log: a username, a certificate CN or ``token:<file>:<line>``.
    """

    cluster: str
    method: Method
    subject: str = ""


@dataclass(slots=True)
class _Basic:
    user_digest: bytes
    cluster: str
    username: str
    # Exactly one of these is set: a SHA-256 of the plain password, or a bcrypt hash.
    password_digest: bytes | None
    bcrypt_hash: bytes | None
    # SHA-256 of the last credential bcrypt accepted, so bcrypt runs once per credential.
    verified: bytes = b"\0" * 32


@dataclass(slots=True)
class _Credentials:
    """One immutable-by-convention snapshot of the files; replaced whole on reload."""

    tokens: list[tuple[bytes, str, str]] = field(default_factory=list)  # digest, cluster, subject
    basic: list[_Basic] = field(default_factory=list)
    # Credentials bcrypt rejected recently: the API server retries a wrong password 5 times.
    failed: OrderedDict[bytes, None] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _split_lines(path: Path) -> Iterable[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AuthConfigError(f"{path}: cannot read credentials file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise AuthConfigError(f"{path}: not UTF-8 text") from None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line and not line.startswith("#"):
            yield number, line


def _cluster(path: Path, number: int, name: str) -> str:
    if not CLUSTER_NAME.match(name):
        raise AuthConfigError(f"{path}:{number}: {CLUSTER_NAME_RULE}")
    return name


def parse_token_file(path: Path) -> list[tuple[bytes, str, str]]:
    """Read ``token`` or ``token,cluster`` lines into (sha256(token), cluster, subject)."""
    seen: dict[bytes, int] = {}
    out: list[tuple[bytes, str, str]] = []
    for number, line in _split_lines(path):
        fields = [f.strip() for f in line.split(",")]
        if len(fields) > 2:
            raise AuthConfigError(
                f"{path}:{number}: expected 'token' or 'token,cluster-name', "
                f"got {len(fields)} comma-separated fields"
            )
        token = fields[0]
        if not token or any(c.isspace() for c in token):
            raise AuthConfigError(f"{path}:{number}: the token is empty or contains whitespace")
        cluster = _cluster(path, number, fields[1]) if len(fields) == 2 else ""
        digest = _sha256(token.encode())
        if digest in seen:
            raise AuthConfigError(
                f"{path}:{number}: the same token is already on line {seen[digest]}"
            )
        seen[digest] = number
        out.append((digest, cluster, f"token:{path.name}:{number}"))
    return out


def parse_basic_auth_file(path: Path) -> list[_Basic]:
    """Read ``user:password[:cluster]`` lines; a password starting ``$2b$`` is a bcrypt hash."""
    seen: dict[str, int] = {}
    out: list[_Basic] = []
    for number, line in _split_lines(path):
        fields = line.split(":")
        if len(fields) not in (2, 3):
            raise AuthConfigError(
                f"{path}:{number}: expected 'user:password' or 'user:password:cluster-name' "
                "(a plain password cannot contain ':'; store a bcrypt hash instead)"
            )
        user, password = fields[0], fields[1]
        if not user or not password:
            raise AuthConfigError(f"{path}:{number}: user and password must both be non-empty")
        if user in seen:
            raise AuthConfigError(f"{path}:{number}: user {user!r} is already on line {seen[user]}")
        seen[user] = number
        cluster = _cluster(path, number, fields[2]) if len(fields) == 3 else ""
        if password.startswith(BCRYPT_PREFIXES):
            if len(password) != 60:
                raise AuthConfigError(
                    f"{path}:{number}: password looks like a bcrypt hash but is not 60 characters "
                    "(expected $2b$<cost>$<53 characters>)"
                )
            entry = _Basic(_sha256(user.encode()), cluster, user, None, password.encode())
        else:
            entry = _Basic(_sha256(user.encode()), cluster, user, _sha256(password.encode()), None)
        out.append(entry)
    return out


def hash_password(password: str, rounds: int = 12) -> str:
    """A bcrypt hash for a basic_auth_file line: ``hash_password("s3cret")`` -> ``$2b$12$...``."""
    if len(password.encode()) > BCRYPT_MAX_PASSWORD:
        raise ValueError(f"bcrypt reads at most {BCRYPT_MAX_PASSWORD} bytes of a password: use a "
                         "shorter one, or keep a long one in plain text (compared by SHA-256)")
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()


class Authenticator:
    """Decides whether a webhook request comes from a known sender, and for which cluster.

    ``allowed_cns`` lists the certificate CNs accepted when ``client_ca`` is set: an iterable of
    CNs (the cluster name is the CN) or a mapping CN -> cluster name. ``None`` accepts every
    certificate the CA signed. The TLS handshake itself verifies the chain (see ``tls.py``).
    """

    def __init__(
        self,
        token_file: str | os.PathLike[str] | None = None,
        basic_auth_file: str | os.PathLike[str] | None = None,
        client_ca: str | os.PathLike[str] | None = None,
        allowed_cns: Mapping[str, str] | Iterable[str] | None = None,
        *,
        auto_reload: bool = True,
    ) -> None:
        self.token_file = Path(token_file) if token_file else None
        self.basic_auth_file = Path(basic_auth_file) if basic_auth_file else None
        self.client_ca = Path(client_ca) if client_ca else None
        if allowed_cns is None:
            self.allowed_cns: dict[str, str] | None = None
        elif isinstance(allowed_cns, str):
            self.allowed_cns = {allowed_cns: allowed_cns}  # one CN, not its characters
        elif isinstance(allowed_cns, Mapping):
            self.allowed_cns = dict(allowed_cns)
        else:
            self.allowed_cns = {cn: cn for cn in allowed_cns}
        for cn, cluster in (self.allowed_cns or {}).items():
            if cluster and not CLUSTER_NAME.match(cluster):
                raise AuthConfigError(
                    f"allowed CN {cn!r} names cluster {cluster!r}: {CLUSTER_NAME_RULE}")
        if self.allowed_cns is not None and self.client_ca is None:
            raise AuthConfigError(
                "allowed_cns needs client_ca: CNs are only trusted from a verified certificate"
            )
        if self.client_ca is not None and not self.client_ca.is_file():
            raise AuthConfigError(f"{self.client_ca}: client CA file does not exist")
        self.auto_reload = auto_reload
        self._reload_lock = threading.Lock()
        self._next_check = 0.0
        self._stamps: tuple[tuple[int, int, int] | None, ...] = ()
        self._creds = _Credentials()
        # client address -> [tokens, last refill]; least recently seen first
        self._bcrypt_buckets: OrderedDict[str, list[float]] = OrderedDict()
        self._bcrypt_lock = threading.Lock()
        self.reload()

    @property
    def enabled(self) -> bool:
        """True when at least one authentication method is configured."""
        return bool(self.token_file or self.basic_auth_file or self.client_ca)

    @property
    def header_auth(self) -> bool:
        """True when tokens or basic auth are configured (so a client certificate is optional)."""
        return bool(self.token_file or self.basic_auth_file)

    def _files(self) -> tuple[Path | None, ...]:
        return (self.token_file, self.basic_auth_file)

    def _stamp(self) -> tuple[tuple[int, int, int] | None, ...]:
        stamps: list[tuple[int, int, int] | None] = []
        for path in self._files():
            try:
                st = path.stat() if path else None
            except OSError:
                st = None
            stamps.append((st.st_mtime_ns, st.st_size, st.st_ino) if st else None)
        return tuple(stamps)

    def reload(self) -> None:
        """Re-read the credential files; raises AuthConfigError and keeps the old ones on error."""
        with self._reload_lock:
            stamps = self._stamp()
            creds = _Credentials()
            if self.token_file:
                creds.tokens = parse_token_file(self.token_file)
            if self.basic_auth_file:
                creds.basic = parse_basic_auth_file(self.basic_auth_file)
            # One attribute assignment: requests in flight keep using the snapshot they took.
            self._creds = creds
            self._stamps = stamps
            self._next_check = time.monotonic() + _RELOAD_CHECK_INTERVAL
        log.info("loaded %d token(s), %d basic-auth user(s)", len(creds.tokens), len(creds.basic))

    def reload_if_changed(self) -> bool:
        """Reload when a file's mtime, size or inode changed; checks at most once per second."""
        now = time.monotonic()
        if now < self._next_check:
            return False
        self._next_check = now + _RELOAD_CHECK_INTERVAL
        if self._stamp() == self._stamps:
            return False
        try:
            self.reload()
        except AuthConfigError as exc:
            # A half-written file during rotation must not lock every sender out: keep the old set.
            log.error("keeping the previous credentials: %s", exc)
            return False
        return True

    def authenticate(
        self, authorization_header: bytes | None, peer_cn: str | None, peer: str = ""
    ) -> AuthResult | None:
        """The sender's cluster, or None to reject.

        A Bearer or Basic header for a configured method decides alone: a wrong token is
        rejected even with a good certificate, so a misconfiguration shows. Otherwise (no header,
        or a scheme we do not use) a verified client certificate's CN decides. With no method
        configured everyone is accepted as cluster "". ``peer`` (the client address) selects
        the bcrypt rate limit's bucket.
        """
        if not self.enabled:
            return AuthResult("", "none")
        if self.auto_reload:
            self.reload_if_changed()
        creds = self._creds
        if authorization_header:
            scheme, _, value = authorization_header.strip().partition(b" ")
            scheme = scheme.lower()
            if scheme == b"bearer" and self.token_file:
                return self._check_token(creds, value.strip())
            if scheme == b"basic" and self.basic_auth_file:
                return self._check_basic(creds, value.strip(), peer)
        if peer_cn is not None and self.client_ca is not None:
            return self._check_cn(peer_cn)
        return None

    def _check_token(self, creds: _Credentials, token: bytes) -> AuthResult | None:
        digest = _sha256(token)
        found: tuple[bytes, str, str] | None = None
        # Compare against every token, never stopping early, so timing says nothing about position.
        for entry in creds.tokens:
            if hmac.compare_digest(digest, entry[0]):
                found = entry
        return AuthResult(found[1], "token", found[2]) if found else None

    def _check_basic(self, creds: _Credentials, value: bytes, peer: str = "") -> AuthResult | None:
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return None
        user, sep, password = decoded.partition(b":")
        if not sep:
            return None
        user_digest = _sha256(user)
        cred_digest = _sha256(b"%d:%s:%s" % (len(user), user, password))
        pass_digest = _sha256(password)
        match: _Basic | None = None
        for entry in creds.basic:
            # Evaluate both comparisons for every entry: no short-circuit, no break.
            user_ok = hmac.compare_digest(user_digest, entry.user_digest)
            if entry.password_digest is not None:
                pass_ok = hmac.compare_digest(pass_digest, entry.password_digest)
            else:
                pass_ok = hmac.compare_digest(cred_digest, entry.verified)
            if user_ok & pass_ok:
                match = entry
        if match is not None:
            return AuthResult(match.cluster, "basic", match.username)
        target: _Basic | None = None
        decoy: _Basic | None = None
        for entry in creds.basic:
            if entry.bcrypt_hash is not None:
                decoy = decoy or entry
                if hmac.compare_digest(user_digest, entry.user_digest):
                    target = entry
        if decoy is None:
            return None  # plain passwords only: every answer above took the same time
        # With bcrypt hashes configured, every credential that did not match costs one bcrypt
        # check, known user or not, so the time taken does not tell which user names exist.
        return self._check_bcrypt(creds, target, decoy, password, cred_digest, peer)

    def may_block(self, authorization_header: bytes | None) -> bool:
        """True when ``authenticate`` may run bcrypt (up to ~0.5 s): call it in a thread then.

        bcrypt releases the GIL, so ``await asyncio.to_thread(auth.authenticate, h, cn)`` keeps
        the event loop serving. Cached credentials answer in microseconds and return False.
        """
        creds = self._creds
        if not authorization_header or not any(e.bcrypt_hash for e in creds.basic):
            return False
        scheme, _, value = authorization_header.strip().partition(b" ")
        if scheme.lower() != b"basic":
            return False
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        digest = _sha256(b"%d:%s:%s" % (len(user), user, password))
        user_digest, pass_digest = _sha256(user), _sha256(password)
        answered = digest in creds.failed
        for entry in creds.basic:
            if entry.password_digest is not None:  # a plain password that matches
                answered |= hmac.compare_digest(user_digest, entry.user_digest) & \
                    hmac.compare_digest(pass_digest, entry.password_digest)
            else:
                answered |= hmac.compare_digest(digest, entry.verified)
        return not answered

    def _bcrypt_allowed(self, peer: str) -> bool:
        now = _now()
        with self._bcrypt_lock:
            buckets = self._bcrypt_buckets
            bucket = buckets.pop(peer, None) or [_BCRYPT_BURST, now]
            buckets[peer] = bucket  # most recently seen last
            while len(buckets) > _BCRYPT_ADDRESSES:
                buckets.popitem(last=False)
            bucket[0] = min(_BCRYPT_BURST, bucket[0] + (now - bucket[1]) * _BCRYPT_RATE)
            bucket[1] = now
            if bucket[0] < 1.0:
                return False
            bucket[0] -= 1.0
            return True

    def _check_bcrypt(
        self, creds: _Credentials, entry: _Basic | None, decoy: _Basic, password: bytes,
        cred_digest: bytes, peer: str,
    ) -> AuthResult | None:
        """bcrypt ``password`` against ``entry`` (the user's), or against ``decoy`` when the
        user has no hash (unknown, or a plain password that did not match): same cost."""
        with creds.lock:
            if cred_digest in creds.failed:
                creds.failed.move_to_end(cred_digest)
                return None
        if len(password) > BCRYPT_MAX_PASSWORD:
            return None  # can never match a bcrypt hash (and bcrypt >= 5 raises on it)
        if not self._bcrypt_allowed(peer):
            # The API server retries a 401 after ~10 s, by which time the bucket has refilled.
            log.warning("too many new basic-auth credentials from %s to verify; rejecting "
                        "without bcrypt", peer or "one address")
            return None
        # bcrypt runs once per new credential, then the digest cache answers.
        checked = entry if entry is not None else decoy
        assert checked.bcrypt_hash is not None
        ok = bcrypt.checkpw(password, checked.bcrypt_hash) and entry is not None
        with creds.lock:
            if ok and entry is not None:
                entry.verified = cred_digest
            else:
                creds.failed[cred_digest] = None
                while len(creds.failed) > _FAILED_CACHE_SIZE:
                    creds.failed.popitem(last=False)
        return AuthResult(entry.cluster, "basic", entry.username) if ok and entry else None

    def _check_cn(self, cn: str) -> AuthResult | None:
        if self.allowed_cns is None:
            # The CN names the cluster: it must be a valid cluster name, or the certificate
            # would write HTML, newlines or 65 KB into labels, logs and the store.
            if not CLUSTER_NAME.match(cn):
                log.warning("rejected a client certificate whose CN is not a cluster name "
                            "(use --allowed-cn to map it): %s", cut(repr(cn), 100))
                return None
            return AuthResult(cn, "mtls", cn)
        # CNs are not secrets (anyone can read a certificate); a dict lookup is fine here.
        cluster = self.allowed_cns.get(cn)
        return AuthResult(cluster, "mtls", cn) if cluster is not None else None
