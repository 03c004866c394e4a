"""Identities: who a request acted as, and the RBAC subject a suggestion binds.

Kubernetes authorizes a request as the impersonated user when there is one, so that is the
identity whose permissions a request exercises (audit2rbac's ``eventToAttributes`` does the
same). Service accounts are users named ``system:serviceaccount:NS:NAME``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Literal, Protocol

SA_PREFIX = "system:serviceaccount:"
RBAC_GROUP = "rbac.authorization.k8s.io"
Kind = Literal["User", "ServiceAccount", "Group"]


class HasUser(Protocol):
    """The two user fields of an audit event (``auditsink.model.Event`` or a slimmer struct)."""

    @property
    def user(self) -> UserLike: ...

    @property
    def impersonatedUser(self) -> UserLike | None: ...  # noqa: N802 - the audit field's name


class UserLike(Protocol):
    username: str
    groups: list[str]


def acting_user(event: HasUser) -> UserLike:
    """The identity a request was authorized as: the impersonated user, else the user.

    This is the one place that decides it: when the store can select by impersonated user
    (issue 13's selector), only the candidate selection around it changes.
    """
    impersonated = event.impersonatedUser
    return impersonated if impersonated is not None and impersonated.username else event.user


@dataclass(frozen=True, order=True)
class Identity:
    """A user, service account or group, as an RBAC binding subject names it.

    >>> Identity.parse_serviceaccount("work:robot").username
    'system:serviceaccount:work:robot'
    """

    kind: Kind
    name: str
    namespace: str = ""

    @classmethod
    def user(cls, username: str) -> Identity:
        """A user; ``system:serviceaccount:NS:NAME`` becomes that service account."""
        if username.startswith(SA_PREFIX):
            rest = username[len(SA_PREFIX):]
            namespace, sep, name = rest.partition(":")
            if sep and namespace and name and ":" not in name:
                return cls("ServiceAccount", name, namespace)
        if not username:
            raise ValueError("a user name must not be empty")
        return cls("User", username)

    @classmethod
    def parse_serviceaccount(cls, text: str) -> Identity:
        """``NS:NAME`` (as audit2rbac's ``--serviceaccount`` takes it)."""
        namespace, sep, name = text.partition(":")
        if not sep or not namespace or not name or ":" in name:
            raise ValueError(f"service account {text!r}: expected NAMESPACE:NAME")
        return cls("ServiceAccount", name, namespace)

    @classmethod
    def group(cls, name: str) -> Identity:
        if not name:
            raise ValueError("a group name must not be empty")
        return cls("Group", name)

    @property
    def username(self) -> str:
        """The username requests carry ("" for a group)."""
        if self.kind == "ServiceAccount":
            return f"{SA_PREFIX}{self.namespace}:{self.name}"
        return self.name if self.kind == "User" else ""

    def matches(self, user: UserLike) -> bool:
        """Whether a request acting as ``user`` belongs to this identity."""
        if self.kind == "Group":
            return self.name in user.groups
        return user.username == self.username

    def subject(self) -> dict[str, str]:
        """The rbac.authorization.k8s.io/v1 Subject that binds this identity."""
        if self.kind == "ServiceAccount":
            return {"kind": "ServiceAccount", "name": self.name, "namespace": self.namespace}
        return {"kind": self.kind, "apiGroup": RBAC_GROUP, "name": self.name}

    def label(self) -> str:
        """For people: ``ServiceAccount work/robot``, ``User alice``, ``Group dev-team``."""
        if self.kind == "ServiceAccount":
            return f"ServiceAccount {self.namespace}/{self.name}"
        return f"{self.kind} {self.name}"

    def object_name(self, prefix: str = "auditsink") -> str:
        """The name of the Roles and bindings suggested for it, unique per identity.

        RBAC names may hold anything but ``/`` and ``%`` (and not be ``.`` or ``..``); a name
        that had to be changed gets a hash of the original so two identities never share one.

        >>> Identity.parse_serviceaccount("work:robot").object_name()
        'auditsink:serviceaccount:work:robot'
        >>> Identity.user("a/b").object_name()
        'auditsink:user:a-b-0004618f'
        """
        if self.kind == "ServiceAccount":
            raw = f"{prefix}:serviceaccount:{self.namespace}:{self.name}"
        else:
            raw = f"{prefix}:{self.kind.lower()}:{self.name}"
        safe = _UNSAFE.sub("-", raw)
        if safe != raw:
            safe += "-" + hashlib.sha256(raw.encode()).hexdigest()[:8]
        return safe


# Characters a path segment (an RBAC object name) cannot hold, and control characters that
# would make the YAML hard to read.
_UNSAFE = re.compile(r"[/%\x00-\x1f\x7f]")
