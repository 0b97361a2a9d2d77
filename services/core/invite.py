"""Invite tokens: what a machine needs to join a mesh, in one copy-pasteable string.

    mesh1.<base64url(JSON payload)>.<base64url(first 6 bytes of SHA-256 of the payload)>

The payload (format version 2) names the mesh, its etcd endpoints and its authority (the
founding node's enrolment door), pins the mesh's CA by fingerprint, and carries an invite: an
id and a secret that the authority checks once, when the machine enrols and gets its own
certificate. The invite says what the machine becomes (a serving node or an API client) and
may expire or be limited in uses; nothing long-lived travels in a token. The checksum catches
a token cut short or mistyped; it proves nothing, the invite secret does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from dataclasses import asdict, dataclass, field

from .errors import InvalidRequest

PREFIX = "mesh1"
VERSION = 2
ROLES = ("node", "client")


class InvalidToken(InvalidRequest):
    pass


@dataclass(frozen=True)
class InviteToken:
    mesh_id: str
    etcd: list[str]
    authority: str  # host:port of the enrolment door
    ca: str  # SHA-256 fingerprint of the mesh's CA certificate (pki.fingerprint)
    invite: str  # "<id>.<secret>"
    role: str = "node"
    expires: int = 0  # unix time; 0 = never
    mesh_name: str = ""
    version: int = VERSION
    extra: dict[str, str] = field(default_factory=dict)

    def encode(self) -> str:
        payload = json.dumps(asdict(self), separators=(",", ":"), sort_keys=True).encode()
        return f"{PREFIX}.{_b64(payload)}.{_b64(_checksum(payload))}"

    @property
    def invite_id(self) -> str:
        return self.invite.partition(".")[0]

    @property
    def invite_secret(self) -> str:
        return self.invite.partition(".")[2]

    def expired(self, now: float | None = None) -> bool:
        return bool(self.expires) and (time.time() if now is None else now) >= self.expires


def decode_token(text: str) -> InviteToken:
    text = text.strip()
    parts = text.split(".")
    if not parts[0] or parts[0] != PREFIX:
        raise InvalidToken("this is not a Mesh LLM invite token (they start with 'mesh1.')")
    if len(parts) != 3:
        raise InvalidToken("the invite token is truncated or damaged: copy it again, whole")
    try:
        payload = _unb64(parts[1])
        checksum = _unb64(parts[2])
    except (binascii.Error, ValueError) as exc:
        raise InvalidToken("the invite token is damaged: copy it again, whole") from exc
    if checksum != _checksum(payload):
        raise InvalidToken("the invite token is truncated or damaged: copy it again, whole")
    try:
        values = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidToken("the invite token is damaged: copy it again, whole") from exc
    return _from_values(values)


def _from_values(values: object) -> InviteToken:
    if not isinstance(values, dict):
        raise InvalidToken("the invite token is damaged: copy it again, whole")
    version = values.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version < VERSION:
        raise InvalidToken(
            f"the invite token has format version {version}, from an older mesh-llm: mint a "
            "new one with `mesh-llm invite` on a node of the mesh"
        )
    if version != VERSION:
        raise InvalidToken(
            f"the invite token has format version {str(version)[:20]!r}; this mesh-llm reads "
            f"version {VERSION}: upgrade mesh-llm on this machine"
        )
    try:
        token = InviteToken(**values)
    except TypeError as exc:
        raise InvalidToken("the invite token is damaged: copy it again, whole") from exc
    _check_fields(token)
    return token


def _check_fields(token: InviteToken) -> None:
    strings = (token.mesh_id, token.authority, token.ca, token.invite, token.role, token.mesh_name)
    if not all(isinstance(v, str) for v in strings) or not isinstance(token.etcd, list):
        raise InvalidToken("the invite token is damaged: copy it again, whole")
    if not token.mesh_id or not token.etcd or not all(isinstance(e, str) for e in token.etcd):
        raise InvalidToken("the invite token names no mesh or no store address")
    if not token.authority or not token.ca or "." not in token.invite:
        raise InvalidToken("the invite token carries no invite: mint one with `mesh-llm invite`")
    if token.role not in ROLES:
        raise InvalidToken(f"the invite token's role {token.role[:20]!r} is unknown")
    if not isinstance(token.expires, int) or isinstance(token.expires, bool):
        raise InvalidToken("the invite token is damaged: copy it again, whole")
    if not isinstance(token.extra, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in token.extra.items()
    ):
        raise InvalidToken("the invite token is damaged: copy it again, whole")


def _checksum(payload: bytes) -> bytes:
    return hashlib.sha256(payload).digest()[:6]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
