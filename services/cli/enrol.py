"""A machine's side of membership: enrol with an invite token (the CA checked against the
token's fingerprint before anything is sent), keep the node's credentials and the mesh's
coordinates (`mesh.json`) in one directory, and talk to the authority with them."""

from __future__ import annotations

import json
import ssl
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
from cryptography import x509

from meshllm.core import pki
from meshllm.core.errors import InvalidRequest, MeshError, Unavailable
from meshllm.core.invite import InvalidToken, InviteToken

MESH_FILE = "mesh.json"
TIMEOUT = aiohttp.ClientTimeout(total=30, sock_connect=10)


@dataclass(frozen=True)
class Membership:
    """What a node knows about the mesh it belongs to (mesh.json beside its credentials)."""

    mesh_id: str
    etcd: list[str]
    authority: str
    node: str
    role: str
    mesh_name: str = ""

    def save(self, directory: Path) -> None:
        pki.write_private(directory / MESH_FILE, json.dumps(asdict(self), indent=2).encode())

    @classmethod
    def load(cls, directory: Path) -> Membership:
        path = directory / MESH_FILE
        try:
            values = json.loads(path.read_text())
            return cls(**values)
        except FileNotFoundError as exc:
            raise InvalidRequest(f"{directory} holds no mesh membership ({MESH_FILE})") from exc
        except (ValueError, TypeError) as exc:
            raise InvalidRequest(f"{path} is damaged: join the mesh again") from exc


async def fetch_ca(address: str, fingerprint: str) -> x509.Certificate:
    """The mesh's CA from its authority, accepted only if it is the one the token pins."""
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE  # nothing is trusted from this answer but the pin
    body = await _call("GET", address, "/v1/ca", unverified, raw=True)
    ca = pki.load_cert(body)
    if pki.fingerprint(ca) != fingerprint:
        raise InvalidToken(
            f"the authority at {address} presented a CA that is not the token's: the token "
            "is for another mesh, or something else answers at that address"
        )
    return ca


async def enrol(
    token: InviteToken, node: str, hosts: tuple[str, ...], directory: Path
) -> Membership:
    """Join the mesh with `token`: a key made here, a certificate from the authority, both
    saved in `directory` with mesh.json."""
    if token.expired():
        raise InvalidToken("this invite token has expired: ask for a new one (mesh-llm invite)")
    ca = await fetch_ca(token.authority, token.ca)
    key = pki.new_key()
    csr = pki.make_csr(key, node)
    trusted = ssl.create_default_context(cadata=pki.pem(ca).decode())
    reply = await _call(
        "POST",
        token.authority,
        "/v1/enrol",
        trusted,
        {"invite": token.invite, "csr": pki.pem(csr).decode(), "hosts": list(hosts)},
    )
    cert = pki.load_cert(str(reply.get("certificate", "")).encode())
    if cert.public_key() != key.public_key() or pki.identity_of(cert).mesh_id != token.mesh_id:
        raise InvalidRequest("the authority answered with a certificate that is not ours")
    pki.Credentials(directory).save(ca, cert, key)
    identity = pki.identity_of(cert)
    membership = Membership(
        mesh_id=token.mesh_id,
        etcd=token.etcd,
        authority=token.authority,
        node=identity.node,
        role=identity.role,
        mesh_name=token.mesh_name,
    )
    membership.save(directory)
    return membership


class AuthorityClient:
    """The authority's management calls, made with this node's certificate."""

    def __init__(self, directory: Path) -> None:
        self.membership = Membership.load(directory)
        self._context = pki.Credentials(directory).check().client_context()

    async def invite(self, role: str, ttl_s: float, uses: int) -> dict[str, Any]:
        body = {"role": role, "ttl_s": ttl_s, "uses": uses}
        return await self._post("/v1/invites", body)

    async def revoke(self, node: str) -> dict[str, Any]:
        return await self._post("/v1/revoke", {"node": node})

    async def members(self) -> list[dict[str, Any]]:
        reply = await _call("GET", self.membership.authority, "/v1/members", self._context)
        return list(reply["members"])

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await _call("POST", self.membership.authority, path, self._context, body)


async def _call(
    method: str,
    address: str,
    path: str,
    context: ssl.SSLContext,
    body: dict[str, Any] | None = None,
    *,
    raw: bool = False,
) -> Any:
    url = f"https://{address}{path}"
    hostname = pki.SERVER_NAME if context.check_hostname else None
    try:
        async with (
            aiohttp.ClientSession(timeout=TIMEOUT) as http,
            http.request(method, url, json=body, ssl=context, server_hostname=hostname) as reply,
        ):
            data = await reply.read()
            if reply.status >= 400:
                raise _error(reply.status, data, address)
            return data if raw else json.loads(data)
    except (aiohttp.ClientError, TimeoutError, ssl.SSLError) as exc:
        raise Unavailable(
            f"cannot reach the mesh's authority at {address} ({exc or type(exc).__name__}): "
            "is the founding node running, and its port open to this machine?"
        ) from exc
    except ValueError as exc:
        raise Unavailable(f"the authority at {address} answered something unreadable") from exc


def _error(status: int, data: bytes, address: str) -> MeshError:
    try:
        message = str(json.loads(data)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        message = f"the authority at {address} answered HTTP {status}"
    return MeshError(message, http_status=status)
