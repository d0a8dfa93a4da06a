"""Who may place users: bearer tokens, from a token file or checked by the Kubernetes API.

- ``TokenFileAccess``: one token per line of a file (blank lines and ``#`` comments ignored);
  every listed token may do everything. The file is read again when it changes, so a rotated
  Secret takes effect without a restart.
- ``KubernetesAccess``: a TokenReview says who the token belongs to, and a SubjectAccessReview
  whether that identity may ``create``/``get``/``delete`` the virtual resource
  ``linepools/placements`` of the pool, so apps are granted placements by ordinary RBAC.
  Answers are cached briefly (keyed by a hash of the token, never the token itself), so a busy
  app costs the API server two reviews a minute, not two per request.

Failures: ``Unauthenticated`` (401), ``Forbidden`` (403) and ``AccessUnavailable`` (the API
server could not answer: 503). None of their messages carries a token.
"""

import asyncio
import hashlib
import hmac
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from linepool.api import GROUP, POOLS

SUBRESOURCE = "placements"
ALLOWED_TTL = 60.0
DENIED_TTL = 10.0


class AccessError(Exception):
    """A request was not let through; ``status`` is the HTTP answer."""

    status = 500
    reason = "Error"


class Unauthenticated(AccessError):
    status = 401
    reason = "Unauthorized"


class Forbidden(AccessError):
    status = 403
    reason = "Forbidden"


class AccessUnavailable(AccessError):
    status = 503
    reason = "AuthUnavailable"


def bearer(header: str | None) -> str:
    """The token of an ``Authorization: Bearer`` header; ``Unauthenticated`` when there is none."""
    if not header:
        raise Unauthenticated("send an Authorization: Bearer <token> header")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
    return token.strip()


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Access(ABC):
    @abstractmethod
    async def check(self, *, token: str, verb: str, namespace: str, pool: str) -> None:
        """Return when the token may do ``verb`` on the pool's placements; raise ``AccessError`` otherwise."""


class TokenFileAccess(Access):
    """Tokens listed in a file; each may do everything."""

    def __init__(self, *, path: str) -> None:
        self._path = Path(path)
        self._stamp: tuple[float, int] | None = None
        self._digests: frozenset[str] = frozenset()
        self._load()
        if not self._digests:
            raise ValueError(f"--token-file {path}: the file lists no token")

    def _load(self) -> None:
        try:
            info = self._path.stat()
            stamp = (info.st_mtime, info.st_size)
            if stamp == self._stamp:
                return
            lines = self._path.read_text().splitlines()
        except OSError as exc:
            if self._stamp is None:
                raise ValueError(f"--token-file {self._path}: {exc.strerror}") from None
            return  # keep the tokens we had: a Secret mid-rotation is briefly absent
        self._digests = frozenset(_digest(text.strip()) for text in lines if text.strip() and not text.startswith("#"))
        self._stamp = stamp

    async def check(self, *, token: str, verb: str, namespace: str, pool: str) -> None:
        self._load()
        presented = _digest(token)
        # Compare digests in constant time, so response timing says nothing about a token.
        if not any(hmac.compare_digest(presented, known) for known in self._digests):
            raise Unauthenticated("the bearer token is not valid")


class KubernetesAccess(Access):
    """TokenReview and SubjectAccessReview against the cluster's API server."""

    def __init__(self, *, api_client: kubernetes.client.ApiClient, audiences: list[str] | None = None) -> None:
        self._authn = kubernetes.client.AuthenticationV1Api(api_client)
        self._authz = kubernetes.client.AuthorizationV1Api(api_client)
        self._audiences = audiences
        self._users: dict[str, tuple[float, dict[str, Any] | None]] = {}
        self._grants: dict[tuple[str, str, str, str], tuple[float, bool]] = {}

    async def check(self, *, token: str, verb: str, namespace: str, pool: str) -> None:
        key = _digest(token)
        now = time.monotonic()
        cached = self._users.get(key)
        if cached is None or cached[0] < now:
            user = await asyncio.to_thread(self._review_token, token)
            self._users[key] = (now + (ALLOWED_TTL if user else DENIED_TTL), user)
        else:
            user = cached[1]
        if user is None:
            raise Unauthenticated("the bearer token is not valid for this cluster")
        grant_key = (key, verb, namespace, pool)
        grant = self._grants.get(grant_key)
        if grant is None or grant[0] < now:
            allowed = await asyncio.to_thread(self._review_access, user, verb, namespace, pool)
            self._grants[grant_key] = (now + (ALLOWED_TTL if allowed else DENIED_TTL), allowed)
        else:
            allowed = grant[1]
        if not allowed:
            raise Forbidden(
                f"{user.get('username')} may not {verb} {POOLS}/{SUBRESOURCE} of {pool} in namespace {namespace} "
                f"(grant it with a Role for group {GROUP}, resource {POOLS}/{SUBRESOURCE}, verb {verb})"
            )

    def _review_token(self, token: str) -> dict[str, Any] | None:
        body: Any = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                "spec": {"token": token, **({"audiences": self._audiences} if self._audiences else {})}}
        try:
            review = self._authn.create_token_review(body, _request_timeout=10)
        except (ApiException, HTTPError, OSError) as exc:
            raise AccessUnavailable(f"TokenReview failed: {_describe(exc)}") from None
        status = review.status
        if status is None or not status.authenticated or status.user is None:
            return None
        return {"username": status.user.username, "uid": status.user.uid, "groups": status.user.groups or [],
                "extra": status.user.extra or {}}

    def _review_access(self, user: dict[str, Any], verb: str, namespace: str, pool: str) -> bool:
        body: Any = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {
            "user": user["username"], "uid": user["uid"], "groups": user["groups"], "extra": user["extra"],
            "resourceAttributes": {"group": GROUP, "resource": POOLS, "subresource": SUBRESOURCE,
                                   "verb": verb, "namespace": namespace, "name": pool},
        }}
        try:
            review = self._authz.create_subject_access_review(body, _request_timeout=10)
        except (ApiException, HTTPError, OSError) as exc:
            raise AccessUnavailable(f"SubjectAccessReview failed: {_describe(exc)}") from None
        return bool(review.status and review.status.allowed)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"{exc.status} {exc.reason}"
    return type(exc).__name__
