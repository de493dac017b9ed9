"""Authentication for the emulated API server: who is calling.

* The token :func:`~.apiserver.write_kubeconfig` writes by default (:data:`SUPERUSER_TOKEN`)
  is a superuser, ``kubernetes-admin`` in group ``system:masters``: every request is allowed
  (as for a cluster's admin kubeconfig).
* ServiceAccount tokens come from the TokenRequest API (``POST
  /api/v1/namespaces/{ns}/serviceaccounts/{name}/token``) or
  :meth:`~.apiserver.KubeEmulator.issue_token`. They look like Kubernetes' bound tokens (a
  JWT with the usual claims; the signature is not checked by anyone) and authenticate as
  ``system:serviceaccount:{ns}:{name}`` with groups ``system:serviceaccounts``,
  ``system:serviceaccounts:{ns}`` and ``system:authenticated``, until they expire or the
  ServiceAccount is deleted (its uid is bound into the token).
* No ``Authorization`` header: ``system:anonymous`` in ``system:unauthenticated`` (as with
  anonymous auth on), which RBAC lets read ``/version`` and ``/healthz`` only.
* Any other token: 401 Unauthorized.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import ApiError

__all__ = [
    "ANONYMOUS",
    "DEFAULT_AUDIENCE",
    "SUPERUSER",
    "SUPERUSER_TOKEN",
    "SYSTEM",
    "IssuedToken",
    "TokenIssuer",
    "UserInfo",
    "service_account_username",
    "unauthorized",
]

SUPERUSER_TOKEN = "kmock-dummy-token"
DEFAULT_AUDIENCE = "https://kubernetes.default.svc.cluster.local"
ISSUER = "https://kubernetes.default.svc.cluster.local"


@dataclasses.dataclass(frozen=True)
class UserInfo:
    """An authenticated user, as ``user.Info``: name, uid and groups."""

    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: Mapping[str, Sequence[str]] = dataclasses.field(default_factory=dict)

    @property
    def is_superuser(self) -> bool:
        """``system:masters`` bypasses authorization and admission permission checks."""
        return "system:masters" in self.groups

    def as_dict(self) -> dict[str, Any]:
        return {"username": self.name, "uid": self.uid, "groups": list(self.groups)}


SUPERUSER = UserInfo("kubernetes-admin", ("system:masters", "system:authenticated"))
ANONYMOUS = UserInfo("system:anonymous", ("system:unauthenticated",))
#: The emulator itself (its "controllers": default ServiceAccounts, aggregation, GC).
SYSTEM = UserInfo("system:apiserver", ("system:masters", "system:authenticated"))


def service_account_username(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


@dataclasses.dataclass(frozen=True)
class IssuedToken:
    """What the emulator remembers about a token it issued."""

    namespace: str
    service_account: str
    service_account_uid: str
    expires: float
    audiences: tuple[str, ...]

    def user(self) -> UserInfo:
        return UserInfo(
            service_account_username(self.namespace, self.service_account),
            (
                "system:serviceaccounts",
                f"system:serviceaccounts:{self.namespace}",
                "system:authenticated",
            ),
            self.service_account_uid,
        )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenIssuer:
    """Issues ServiceAccount tokens and looks them up."""

    def __init__(self) -> None:
        self._tokens: dict[str, IssuedToken] = {}

    def issue(
        self,
        namespace: str,
        service_account: str,
        service_account_uid: str,
        *,
        expiration_seconds: int = 3600,
        audiences: Sequence[str] = (DEFAULT_AUDIENCE,),
        bound_object: Mapping[str, Any] | None = None,
    ) -> tuple[str, IssuedToken]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": list(audiences),
            "exp": now + expiration_seconds,
            "iat": now,
            "iss": ISSUER,
            "jti": secrets.token_hex(16),
            "kubernetes.io": {
                "namespace": namespace,
                "serviceaccount": {"name": service_account, "uid": service_account_uid},
            },
            "nbf": now,
            "sub": service_account_username(namespace, service_account),
        }
        if bound_object:
            kind = str(bound_object.get("kind", "")).lower() or "object"
            claims["kubernetes.io"][kind] = {
                "name": bound_object.get("name"),
                "uid": bound_object.get("uid"),
            }
        header = {"alg": "RS256", "kid": "kube-emulator"}
        token = ".".join(
            [
                _b64(json.dumps(header).encode()),
                _b64(json.dumps(claims).encode()),
                _b64(secrets.token_bytes(32)),
            ]
        )
        issued = IssuedToken(
            namespace,
            service_account,
            service_account_uid,
            float(now + expiration_seconds),
            tuple(audiences),
        )
        self._tokens[token] = issued
        return token, issued

    def lookup(self, token: str) -> IssuedToken | None:
        issued = self._tokens.get(token)
        if issued is None or issued.expires < time.time():
            return None
        return issued


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")
