"""Invite tokens: everything a node needs to join a mesh, in one copy-pasteable string.

    mesh1.<base64url(JSON payload)>.<base64url(first 6 bytes of SHA-256 of the payload)>

The payload carries the format version, the mesh id and name, the etcd endpoints and the mesh
secret. The checksum catches a token cut short or mistyped; the prefix and version catch a
token from something else or from a newer release. Anyone holding a token can join: treat it
like a password.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import asdict, dataclass, field

from .errors import InvalidRequest

PREFIX = "mesh1"
VERSION = 1


class InvalidToken(InvalidRequest):
    pass


@dataclass(frozen=True)
class InviteToken:
    mesh_id: str
    etcd: list[str]
    secret: str
    mesh_name: str = ""
    version: int = VERSION
    extra: dict[str, str] = field(default_factory=dict)

    def encode(self) -> str:
        payload = json.dumps(asdict(self), separators=(",", ":"), sort_keys=True).encode()
        return f"{PREFIX}.{_b64(payload)}.{_b64(_checksum(payload))}"


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
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidToken("the invite token is damaged: copy it again, whole") from exc
    return _from_values(values)


def _from_values(values: object) -> InviteToken:
    if not isinstance(values, dict):
        raise InvalidToken("the invite token is damaged: copy it again, whole")
    version = values.get("version")
    if version != VERSION:
        raise InvalidToken(
            f"the invite token has format version {version}; this mesh-llm reads version "
            f"{VERSION}: upgrade mesh-llm on this machine"
        )
    try:
        token = InviteToken(**values)
    except TypeError as exc:
        raise InvalidToken("the invite token is damaged: copy it again, whole") from exc
    if not token.mesh_id or not token.etcd or not all(isinstance(e, str) for e in token.etcd):
        raise InvalidToken("the invite token names no mesh or no store address")
    return token


def _checksum(payload: bytes) -> bytes:
    return hashlib.sha256(payload).digest()[:6]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
