"""Sender authentication: credential files, constant-time matching, bcrypt cache, rotation."""

from __future__ import annotations

import base64
import hmac
import logging
import os
from pathlib import Path

import bcrypt
import pytest

from auditsink.receive import auth
from auditsink.receive.auth import AuthConfigError, Authenticator, AuthResult, hash_password


def basic(user: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture()
def tokens(tmp_path: Path) -> Path:
    return write(
        tmp_path / "tokens",
        "# webhook tokens\n\n  tok-default  \ntok-prod,prod-eu\n# tok-old,old\ntok-dev , dev\n",
    )


def test_disabled_accepts_everyone_as_default_cluster() -> None:
    a = Authenticator()
    assert not a.enabled
    assert a.authenticate(None, None) == AuthResult("", "none")


def test_tokens_with_and_without_cluster(tokens: Path) -> None:
    a = Authenticator(token_file=tokens)
    assert a.enabled and a.header_auth
    assert a.authenticate(b"Bearer tok-default", None) == AuthResult("", "token", "token:tokens:3")
    assert a.authenticate(b"Bearer tok-prod", None) == AuthResult(
        "prod-eu", "token", "token:tokens:4"
    )
    assert a.authenticate(b"bearer tok-dev", None) == AuthResult("dev", "token", "token:tokens:6")
    # The commented-out token is not a credential; neither are prefixes or near misses.
    for bad in (
        b"Bearer tok-old",
        b"Bearer tok-pro",
        b"Bearer tok-prod,prod-eu",
        b"Bearer ",
        b"tok-prod",
    ):
        assert a.authenticate(bad, None) is None
    assert a.authenticate(None, None) is None
    assert a.authenticate(basic("tok-prod", "x"), None) is None


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        ("ok\na,b,c\n", 2, "expected 'token' or 'token,cluster-name', got 3"),
        ("\n\nsome token\n", 3, "empty or contains whitespace"),
        (",prod\n", 1, "empty or contains whitespace"),
        ("tok,bad/cluster\n", 1, "cluster name must be"),
        ("tok,-x\n", 1, "cluster name must be"),
        ("dup\n# c\ndup,prod\n", 3, "the same token is already on line 1"),
    ],
)
def test_token_file_errors_name_file_and_line(
    tmp_path: Path, text: str, line: int, expected: str
) -> None:
    path = write(tmp_path / "tokens", text)
    with pytest.raises(AuthConfigError) as info:
        Authenticator(token_file=path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: ")
    assert expected in message
    # The secret itself never appears in the error.
    assert "some token" not in message and "dup" not in message.split(": ", 1)[1]


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AuthConfigError, match=r"tokens: cannot read credentials file"):
        Authenticator(token_file=tmp_path / "tokens")
    with pytest.raises(AuthConfigError, match="client CA file does not exist"):
        Authenticator(client_ca=tmp_path / "ca.crt")
    with pytest.raises(AuthConfigError, match="allowed_cns needs client_ca"):
        Authenticator(allowed_cns=["kube-apiserver"])


def test_basic_auth_plain_and_bcrypt(tmp_path: Path) -> None:
    hashed = hash_password("s3cret", rounds=4)
    path = write(
        tmp_path / "basic",
        f"# the seed article's user\nsome-user:some-password\napiserver:{hashed}:prod-eu\n"
        f"legacy:{hashed.replace('$2b$', '$2a$')}\n",
    )
    a = Authenticator(basic_auth_file=path)
    assert a.authenticate(basic("some-user", "some-password"), None) == AuthResult(
        "", "basic", "some-user"
    )
    assert a.authenticate(basic("apiserver", "s3cret"), None) == AuthResult(
        "prod-eu", "basic", "apiserver"
    )
    assert a.authenticate(basic("legacy", "s3cret"), None) == AuthResult("", "basic", "legacy")
    assert a.authenticate(basic("apiserver", "s3cret "), None) is None
    assert a.authenticate(basic("apiserver", hashed), None) is None  # the hash is not the password
    assert a.authenticate(basic("some-user", "wrong"), None) is None
    assert a.authenticate(basic("nobody", "some-password"), None) is None
    assert a.authenticate(b"Basic !!!notbase64", None) is None
    assert a.authenticate(b"Basic " + base64.b64encode(b"no-colon"), None) is None
    assert a.authenticate(b"Bearer some-password", None) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("user\n", "expected 'user:password' or 'user:password:cluster-name'"),
        ("u:pa:ss:word\n", "a plain password cannot contain ':'"),
        (":pw\n", "user and password must both be non-empty"),
        ("u:pw:Bad Cluster\n", "cluster name must be"),
        ("u:$2b$12$tooshort\n", "bcrypt hash but is not 60 characters"),
        ("u:pw\nu:other\n", "user 'u' is already on line 2"),
    ],
)
def test_basic_auth_file_errors(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path / "basic", "# header\n" + text)
    with pytest.raises(AuthConfigError) as info:
        Authenticator(basic_auth_file=path)
    assert str(info.value).startswith(f"{path}:{text.count(chr(10)) + 1}: ")
    assert expected in str(info.value)
    assert "pw" not in str(info.value).split(": ", 1)[1].replace("password", "")


def test_bcrypt_runs_once_per_credential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "basic", f"apiserver:{hash_password('s3cret', rounds=4)}:prod\n")
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(password)
        return real(password, hashed)

    monkeypatch.setattr(auth.bcrypt, "checkpw", counting)
    a = Authenticator(basic_auth_file=path)
    for _ in range(3):
        assert a.authenticate(basic("apiserver", "s3cret"), None) == AuthResult(
            "prod", "basic", "apiserver"
        )
    # A wrong password, retried by the API server, also costs bcrypt only once.
    for _ in range(3):
        assert a.authenticate(basic("apiserver", "wrong"), None) is None
    assert calls == [b"s3cret", b"wrong"]
    # An unknown user costs one bcrypt check too (against a configured hash), so the time
    # taken does not tell which user names exist; retried, it is answered from the cache.
    for _ in range(3):
        assert a.authenticate(basic("other", "s3cret"), None) is None
    assert calls == [b"s3cret", b"wrong", b"s3cret"]


def test_every_candidate_is_compared(
    tokens: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The match position must not change the work done: no early exit after a hit."""
    compared: list[int] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append(1)
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    a = Authenticator(token_file=tokens)
    counts = []
    for header in (b"Bearer tok-default", b"Bearer tok-dev", b"Bearer nothing"):
        compared.clear()
        a.authenticate(header, None)
        counts.append(len(compared))
    assert counts == [3, 3, 3]

    path = write(tmp_path / "basic", "a:1\nb:2\nc:3\n")
    b = Authenticator(basic_auth_file=path)
    counts = []
    for user, password in (("a", "1"), ("c", "3"), ("c", "x"), ("z", "1")):
        compared.clear()
        b.authenticate(basic(user, password), None)
        counts.append(len(compared))
    assert counts == [6, 6, 6, 6]


def test_client_certificate_cn(tmp_path: Path) -> None:
    ca = write(tmp_path / "ca.crt", "not parsed here; the TLS context loads it\n")
    anyone = Authenticator(client_ca=ca)
    assert anyone.enabled and not anyone.header_auth
    assert anyone.authenticate(None, "kube-apiserver") == AuthResult(
        "kube-apiserver", "mtls", "kube-apiserver"
    )
    assert anyone.authenticate(None, None) is None
    assert Authenticator(client_ca=ca, allowed_cns="apiserver-a").allowed_cns == {
        "apiserver-a": "apiserver-a"
    }
    listed = Authenticator(client_ca=ca, allowed_cns=["apiserver-a"])
    assert listed.authenticate(None, "apiserver-a") == AuthResult(
        "apiserver-a", "mtls", "apiserver-a"
    )
    assert listed.authenticate(None, "apiserver-b") is None
    mapped = Authenticator(
        client_ca=ca, allowed_cns={"kube-apiserver": "", "apiserver-eu": "prod-eu"}
    )
    assert mapped.authenticate(None, "kube-apiserver") == AuthResult("", "mtls", "kube-apiserver")
    assert mapped.authenticate(None, "apiserver-eu") == AuthResult(
        "prod-eu", "mtls", "apiserver-eu"
    )


def test_header_decides_over_certificate(tmp_path: Path, tokens: Path) -> None:
    ca = write(tmp_path / "ca.crt", "x\n")
    a = Authenticator(token_file=tokens, client_ca=ca)
    mtls = AuthResult("kube-apiserver", "mtls", "kube-apiserver")
    assert a.authenticate(b"Bearer tok-prod", "kube-apiserver") == AuthResult(
        "prod-eu", "token", "token:tokens:4"
    )
    assert a.authenticate(b"Bearer wrong", "kube-apiserver") is None
    # A scheme we do not use leaves the decision to the certificate.
    assert a.authenticate(b"Negotiate abc", "kube-apiserver") == mtls
    assert a.authenticate(b"Negotiate abc", None) is None
    # So does a Basic header when no basic_auth_file is configured (client cert + basic in the
    # kubeconfig, but auditsink only checks certificates).
    assert a.authenticate(basic("u", "p"), "kube-apiserver") == mtls
    assert a.authenticate(basic("u", "p"), None) is None
    assert a.authenticate(None, "kube-apiserver") == AuthResult(
        "kube-apiserver", "mtls", "kube-apiserver"
    )
    assert a.authenticate(None, None) is None


def test_rotation_is_picked_up(
    tokens: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(auth, "_RELOAD_CHECK_INTERVAL", 0.0)
    a = Authenticator(token_file=tokens)
    assert a.authenticate(b"Bearer tok-prod", None) is not None
    # Rotate the way operators do: write a new file and rename it over the old one.
    new = tokens.with_name("tokens.new")
    write(new, "tok-rotated,prod-eu\n")
    os.replace(new, tokens)
    caplog.set_level(logging.INFO, logger="auditsink.receive.auth")
    assert a.authenticate(b"Bearer tok-rotated", None) == AuthResult(
        "prod-eu", "token", "token:tokens:1"
    )
    assert a.authenticate(b"Bearer tok-prod", None) is None
    # A broken file mid-rotation keeps the previous credentials and logs without secrets.
    write(tokens, "tok-broken,bad cluster\n")
    assert a.authenticate(b"Bearer tok-rotated", None) is not None
    assert "keeping the previous credentials" in caplog.text
    assert "tok-" not in caplog.text
    with pytest.raises(AuthConfigError):
        a.reload()  # an explicit reload (SIGHUP) reports the error to its caller


def test_reload_check_is_rate_limited(tokens: Path) -> None:
    a = Authenticator(token_file=tokens)
    write(tokens, "tok-new\n")
    # Within the first second the file is not even stat()ed again.
    assert a.reload_if_changed() is False
    assert a.authenticate(b"Bearer tok-new", None) is None
    a.reload()
    assert a.authenticate(b"Bearer tok-new", None) == AuthResult("", "token", "token:tokens:1")


def test_bcrypt_cache_is_dropped_on_rotation(tmp_path: Path) -> None:
    path = write(tmp_path / "basic", f"apiserver:{hash_password('old', rounds=4)}\n")
    a = Authenticator(basic_auth_file=path, auto_reload=False)
    assert a.authenticate(basic("apiserver", "old"), None) is not None
    write(path, f"apiserver:{hash_password('new', rounds=4)}\n")
    a.reload()
    assert a.authenticate(basic("apiserver", "old"), None) is None
    assert a.authenticate(basic("apiserver", "new"), None) is not None


def test_may_block_and_bcrypt_rate_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "basic", f"apiserver:{hash_password('s3cret', rounds=4)}\nplain:pw\n")
    clock = [1000.0]
    monkeypatch.setattr(auth, "_now", lambda: clock[0])
    calls: list[bytes] = []
    real = bcrypt.checkpw
    monkeypatch.setattr(auth.bcrypt, "checkpw", lambda p, h: calls.append(p) or real(p, h))
    a = Authenticator(basic_auth_file=path, auto_reload=False)
    good = basic("apiserver", "s3cret")
    assert a.may_block(good) and a.may_block(basic("apiserver", "guess"))
    assert not a.may_block(basic("plain", "pw"))  # a matching plain password needs no bcrypt
    # Anything else costs one bcrypt check (a decoy for unknown users: equal timing).
    assert a.may_block(basic("nobody", "pw")) and a.may_block(basic("plain", "wrong"))
    assert not a.may_block(b"Bearer x") and not a.may_block(None)
    assert a.authenticate(good, None) is not None
    assert not a.may_block(good)  # cached now: no need for a thread
    # A guessing burst: 3 more bcrypt runs fit in the burst of 4, the rest are refused unrun.
    for i in range(10):
        assert a.authenticate(basic("apiserver", f"guess{i}"), None) is None
    assert len(calls) == 4
    assert a.authenticate(good, None) is not None  # the verified credential is unaffected
    clock[0] += 0.5  # one token back at 2 per second
    assert a.authenticate(basic("apiserver", "guess-late"), None) is None
    assert len(calls) == 5
