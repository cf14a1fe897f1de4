"""Bearer tokens scoped to production lines: who may call which service, for which line.

A tokens file (YAML, `server.auth.tokens_file`) lists who may call a server:

    tokens:
      - name: line-7-camera
        sha256: 5e884898...   # sha256 hex of the token: the file then holds no secret
        lines: [line-7]       # the lines this token may read and write
      - name: operator
        sha256: ...
        lines: ["*"]          # every line
      - name: gateway
        sha256: ...
        lines: ["*"]
        stages: true          # may call the stage services (Embedding, Retrieval, ...), not only the Inspector
      - name: shift-lead
        sha256: ...
        lines: [line-7]
        review: true          # may confirm inspections (ConfirmReview): what teaches a product normal or defect

Rules, the same in embedded mode, a stage run alone and a Ray Serve replica:
- no token, or one not in the file: UNAUTHENTICATED;
- a stage service without `stages: true`: PERMISSION_DENIED (factory-line clients call the Inspector);
- an Inspector request whose `line_id` the token does not hold: PERMISSION_DENIED, with the same words
  whether or not that line exists; a request without a line_id field (not scoped to a line) needs `lines: ["*"]`,
  except the few that read what no line owns (a product type's knowledge: the stage says which);
- ConfirmReview needs `review: true` besides the line (PERMISSION_DENIED naming the right): a line's camera
  token must not teach the product what is normal;
- grpc.health.v1 answers everyone (probes carry no token); reflection needs a valid token.
Secrets come from files or the environment, never the command line.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from services.common.errors import ConfigError, InvalidArgument, PermissionDenied, Unauthenticated

AUTH_HEADER = "authorization"
OPEN_SERVICES = frozenset({"grpc.health.v1.Health"})
ANY_LINE = "*"


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh random bearer token (256 bits)."""
    return secrets.token_urlsafe(32)


def read_secret(file: str = "", env: str = "") -> str:
    """A secret from a file (first line, stripped) or else an environment variable; "" when neither is set."""
    if file:
        try:
            return Path(file).read_text(encoding="utf-8").strip().splitlines()[0].strip()
        except (OSError, IndexError) as e:
            raise ConfigError(f"cannot read a secret from {file}: {e}") from e
    return os.environ.get(env, "").strip() if env else ""


def bearer(token: str) -> tuple[str, str]:
    """The metadata pair that carries a token."""
    return (AUTH_HEADER, f"Bearer {token}")


# The identity of the call being served (set by the request guard; None: checks off or an open service), so a
# servicer can shape an answer by who asks (a line token does not see which gateway replica answered).
CALLER: ContextVar[Identity | None] = ContextVar("echo_iad_caller", default=None)


def sees_internals() -> bool:
    """Whether the caller may see server internals (replica host:pid): checks off, or a stage token."""
    identity = CALLER.get()
    return identity is None or identity.stages


def require_review_right() -> str:
    """The name of who confirms a review ("local" with checks off); PermissionDenied for a token without
    `review: true` (a line token answers parts, it does not teach the product what is normal)."""
    identity = CALLER.get()
    if identity is None:
        return "local"
    if not identity.review:
        raise PermissionDenied(
            f"token {identity.name!r} lacks the right review: true (confirming an inspection teaches the product; "
            "line tokens cannot)"
        )
    return identity.name


@dataclass(frozen=True)
class Identity:
    """Who is calling: a token's name, its lines, and its rights (the stage services; confirming reviews)."""

    name: str
    lines: frozenset[str]
    stages: bool = False
    review: bool = False

    def holds(self, line_id: str) -> bool:
        return ANY_LINE in self.lines or line_id in self.lines


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    sha256: str = Field("", pattern=r"^([0-9a-f]{64})?$", description="sha256 hex of the token (preferred).")
    token: str = Field("", description="The token itself (prefer sha256: the file then holds no secret).")
    lines: list[str] = Field(min_length=1, description='Lines this token may use; ["*"]: every line.')
    stages: bool = Field(False, description="May call the stage services, not only the Inspector.")
    review: bool = Field(False, description="May confirm inspections (ConfirmReview): good or defect.")

    @model_validator(mode="after")
    def _one_secret(self) -> _Entry:
        if bool(self.sha256) == bool(self.token):
            raise ValueError("give exactly one of sha256 (preferred) or token")
        if self.token and len(self.token) < 16:
            raise ValueError("token is shorter than 16 characters")
        return self


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tokens: list[_Entry]


class TokenBook:
    """Token digests -> identities. Lookups compare digests, so the time taken says nothing about a token."""

    def __init__(self) -> None:
        self._by_digest: dict[str, Identity] = {}

    def add(self, token_or_digest: str, identity: Identity, *, digest: bool = False) -> None:
        self._by_digest[token_or_digest if digest else token_sha256(token_or_digest)] = identity

    def lookup(self, token: str) -> Identity | None:
        want = token_sha256(token)
        for digest, identity in self._by_digest.items():
            if hmac.compare_digest(digest, want):
                return identity
        return None

    @classmethod
    def from_file(cls, path: str | Path) -> TokenBook:
        """Read a tokens file; ConfigError names the file and the bad entry."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            parsed = _File.model_validate(data)
        except OSError as e:
            raise ConfigError(f"tokens file {path}: cannot read it: {e}") from e
        except yaml.YAMLError as e:
            raise ConfigError(f"tokens file {path} is not valid YAML: {e}") from e
        except ValidationError as e:
            bad = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
            raise ConfigError(f"tokens file {path}: {bad}") from None
        book = cls()
        for e in parsed.tokens:
            identity = Identity(e.name, frozenset(e.lines), e.stages, e.review)
            book.add(e.sha256 or e.token, identity, digest=bool(e.sha256))
        return book


def _token_from(metadata: Iterable[tuple[str, Any]] | None) -> str:
    for key, value in metadata or ():
        if key.lower() == AUTH_HEADER:
            text = value.decode() if isinstance(value, bytes) else str(value)
            scheme, _, token = text.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("the authorization metadata must be 'Bearer <token>'")
            return token.strip()
    raise Unauthenticated("missing bearer token: send the metadata 'authorization: Bearer <token>'")


class Authorizer:
    """Checks a call's token and what it asks for; disabled (everyone may do everything) without a token book.

    Args:
        book: the tokens; None turns the checks off (the loopback default).
        public_services: services factory-line tokens may call (the Inspector); every other one is a stage.
        shared_methods: "service/method" of public RPCs that read what no line owns (a product type's knowledge):
            any valid token may call them.
    """

    def __init__(
        self, book: TokenBook | None, public_services: Sequence[str] = (), shared_methods: Sequence[str] = ()
    ) -> None:
        self.book = book
        self.public_services = frozenset(public_services)
        self.shared_methods = frozenset(shared_methods)  # "service/method": any valid token, no line needed

    @property
    def enabled(self) -> bool:
        return self.book is not None

    def authenticate(self, service: str, metadata: Iterable[tuple[str, Any]] | None) -> Identity | None:
        """The caller's identity; None when checks are off or the service is open. Raises Unauthenticated."""
        if self.book is None or service in OPEN_SERVICES:
            return None
        identity = self.book.lookup(_token_from(metadata))
        if identity is None:
            raise Unauthenticated("the bearer token is not valid for this server")
        return identity

    def authorize(self, identity: Identity | None, service: str, method: str, request: Any) -> None:
        """Raise PermissionDenied (or InvalidArgument for a missing line) unless `identity` may make this call."""
        if identity is None or service in OPEN_SERVICES or service.startswith("grpc.reflection."):
            return
        if service not in self.public_services:
            if not identity.stages:
                raise PermissionDenied(
                    f"token {identity.name!r} may not call {service}: factory-line tokens call "
                    f"{', '.join(sorted(self.public_services)) or 'the Inspector'}"
                )
            return
        if ANY_LINE in identity.lines or f"{service}/{method}" in self.shared_methods:
            return
        descriptor = getattr(request, "DESCRIPTOR", None)
        if descriptor is None or "line_id" not in descriptor.fields_by_name:
            raise PermissionDenied(
                f"{service}/{method} is not scoped to one line; token {identity.name!r} holds only its own lines"
            )
        line_id = request.line_id
        if not line_id:
            raise InvalidArgument(f"is required: token {identity.name!r} is scoped to lines", field="line_id")
        if not identity.holds(line_id):
            raise PermissionDenied(f"token {identity.name!r} may not use line {line_id[:64]!r}", field="line_id")
