"""The mesh's authority: the founding node holds the mesh's CA and is etcd's root user. It
mints invites, enrols machines that present one (a certificate of their own, an etcd user of
their role), and revokes nodes. Its door is HTTPS on the founding node (`routes`): the CA
certificate is public; enrolment needs an invite; minting invites and revoking need a serving
node's certificate.

Invites and members live in etcd under /mesh-auth/<mesh>/, which nodes may read and only the
authority may write; revoked certificates are listed there too (services refuse them) and in
the CRL file etcd reads on every new connection.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from meshllm.core import access, keys, pki
from meshllm.core.errors import Forbidden, InvalidRequest, MeshError, NotFound, openai_body
from meshllm.core.invite import InviteToken
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.store import EtcdStore, KeyRange, StoreAuth

logger = logging.getLogger(__name__)


def etcd_role(mesh_id: str, role: str) -> str:
    """The etcd role of a node of `role` (named per mesh: one etcd may hold several)."""
    return f"{role}@{mesh_id}"


JOINABLE_ROLES = (pki.NODE, pki.CLIENT)
MAX_BODY = 64 * 1024


class NameTaken(MeshError):
    http_status = 409
    openai_type = "invalid_request_error"
    default_code = "node_name_taken"


def role_ranges(mesh_id: str, role: str) -> list[KeyRange]:
    """What a node of `role` may read and write in etcd. A serving node writes the mesh's keys;
    an API client reads them and writes only its gateway's record and demand; both read the
    authority's records (revocations above all)."""
    mesh, auth = keys.workers(mesh_id).removesuffix("workers/"), keys.auth_root(mesh_id)
    if role == pki.NODE:
        return [KeyRange(mesh, write=True), KeyRange(auth, write=False)]
    return [
        KeyRange(mesh, write=False),
        KeyRange(auth, write=False),
        KeyRange(keys.services(mesh_id, "gateway"), write=True),
        KeyRange(keys.demand(mesh_id), write=True),
    ]


@dataclass(frozen=True)
class AuthorityFiles:
    """The authority's directory: the CA (ca.crt, ca.key), its own certificate as etcd's root
    user (node.crt, node.key, also etcd's server certificate) and the CRL etcd reads."""

    directory: Path

    @property
    def credentials(self) -> pki.Credentials:
        return pki.Credentials(self.directory)

    @property
    def ca_key_path(self) -> Path:
        return self.directory / pki.CA_KEY_FILE

    @property
    def crl_path(self) -> Path:
        return self.directory / "crl.pem"

    def exists(self) -> bool:
        return self.ca_key_path.is_file() and self.credentials.exists()

    def create(self, mesh_id: str, hosts: tuple[str, ...]) -> None:
        ca_key, ca = pki.create_ca(mesh_id)
        key = pki.new_key()
        cert = pki.issue(
            ca_key, ca, key.public_key(), node=pki.ROOT_USER, role=pki.AUTHORITY, hosts=hosts
        )
        pki.write_private(self.ca_key_path, pki.key_pem(ca_key))
        self.credentials.save(ca, cert, key)
        self.write_crl([])

    def load(self) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = serialization.load_pem_private_key(self.ca_key_path.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key, pki.load_cert(self.credentials.ca_path.read_bytes())

    def write_crl(self, serials: list[int]) -> None:
        ca_key, ca = self.load()
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca.subject)
            .last_update(now)
            .next_update(now + datetime.timedelta(days=pki.CA_DAYS))
        )
        for serial in serials:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
            )
        crl = builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
        pki.write_private(self.crl_path, crl)


class Authority:
    def __init__(
        self,
        files: AuthorityFiles,
        mesh_id: str,
        store: EtcdStore,
        *,
        etcd: list[str],
        address: str,
        mesh_name: str = "",
        before_member: Callable[[str], Awaitable[None]] | None = None,
        manage_store: bool = True,
    ) -> None:
        """`manage_store=False`: an etcd run by the operator (serve --etcd), whose users and
        TLS are theirs to set up; members and revocations are still recorded."""
        self.files = files
        self.mesh_id = mesh_id
        self.store = store
        self.etcd = etcd
        self.address = address  # host:port of this door, as tokens name it
        self.mesh_name = mesh_name
        self._before_member = before_member  # called with the node's name before admitting it
        self._admitting = asyncio.Lock()  # enrolments are rare: one at a time
        self._auth = StoreAuth(store) if manage_store else None
        self._ca_key, self.ca = files.load()

    async def prepare_store(self) -> None:
        """etcd's roles and root user, then auth on: from here a client certificate is only
        worth what its CN's user may do. Safe to run again."""
        auth = self._auth
        if auth is None:
            return
        for role in JOINABLE_ROLES:
            await auth.define_role(etcd_role(self.mesh_id, role), role_ranges(self.mesh_id, role))
        await auth.add_user(pki.ROOT_USER, "root")
        await auth.enable()

    async def invite(
        self, role: str = pki.NODE, ttl_s: float = 0, uses: int = -1, extra: dict | None = None
    ) -> InviteToken:
        if role not in JOINABLE_ROLES:
            raise InvalidRequest(f"an invite makes a 'node' or a 'client', not {role[:20]!r}")
        if uses == 0 or uses < -1:
            raise InvalidRequest("uses must be a positive number, or -1 for no limit")
        invite_id, secret = secrets.token_hex(4), secrets.token_urlsafe(24)
        now = int(time.time())
        expires = now + int(ttl_s) if ttl_s > 0 else 0
        record = pb.Invite(
            id=invite_id,
            secret_sha256=hashlib.sha256(secret.encode()).digest(),
            role=role,
            expires_unix=expires,
            uses_left=uses,
            created_unix=now,
        )
        await self.store.put(keys.invite(self.mesh_id, invite_id), record)
        return InviteToken(
            mesh_id=self.mesh_id,
            etcd=self.etcd,
            authority=self.address,
            ca=pki.fingerprint(self.ca),
            invite=f"{invite_id}.{secret}",
            role=role,
            expires=expires,
            mesh_name=self.mesh_name,
            extra=extra or {},
        )

    async def enrol(self, invite: str, csr_pem: bytes, hosts: tuple[str, ...]) -> x509.Certificate:
        """A certificate for the machine behind `csr_pem`, if `invite` is good."""
        csr = pki.load_csr(csr_pem)
        node = pki.csr_node(csr)
        public_key = csr.public_key()
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        async with self._admitting:
            record = await self._use_invite(invite)
            return await self._admit(node, record.role, public_key, hosts, invite_id=record.id)

    async def _use_invite(self, text: str) -> pb.Invite:
        invite_id, _, secret = text.partition(".")
        refused = Forbidden(
            "this invite is not valid in this mesh (wrong, used up or withdrawn): "
            "ask for a new one (mesh-llm invite)"
        )
        if not invite_id or not secret:
            raise refused
        key = keys.invite(self.mesh_id, invite_id)
        found = await self.store.get_raw(key)
        if found is None:
            raise refused
        record = pb.Invite.FromString(found[0])
        digest = hashlib.sha256(secret.encode()).digest()
        if not hmac.compare_digest(digest, record.secret_sha256):
            raise refused
        if record.expires_unix and time.time() >= record.expires_unix:
            raise Forbidden("this invite has expired: ask for a new one (mesh-llm invite)")
        if record.uses_left == -1:
            return record
        if record.uses_left <= 0:
            raise refused
        used = pb.Invite()
        used.CopyFrom(record)
        used.uses_left -= 1
        if not await self.store.replace_if_unchanged(key, found[0], used.SerializeToString()):
            raise Forbidden("this invite was used at the same moment: try again")
        return record

    async def admit(
        self,
        node: str,
        role: str,
        public_key: ec.EllipticCurvePublicKey,
        hosts: tuple[str, ...],
        invite_id: str = "",
    ) -> x509.Certificate:
        """Issue `node` a certificate in `role` and give it an etcd user. A name in use by a
        live node is refused; a name left by a node that is gone is taken over (its old
        certificate revoked)."""
        async with self._admitting:
            return await self._admit(node, role, public_key, hosts, invite_id)

    async def _admit(
        self,
        node: str,
        role: str,
        public_key: ec.EllipticCurvePublicKey,
        hosts: tuple[str, ...],
        invite_id: str,
    ) -> x509.Certificate:
        if self._before_member is not None:
            await self._before_member(node)
        previous = await self.store.get(keys.member(self.mesh_id, node), pb.Member)
        if previous is not None:
            if await self._node_is_live(node):
                raise NameTaken(
                    f"node name '{node}' is in use by a running node of this mesh: choose "
                    "another (--node NAME)"
                )
            await self._revoke_serials(node, [int(previous.serial)])
        cert = pki.issue(self._ca_key, self.ca, public_key, node=node, role=role, hosts=hosts)
        if self._auth is not None:
            await self._auth.add_user(node, etcd_role(self.mesh_id, role))
        member = pb.Member(
            node=node,
            role=role,
            serial=str(cert.serial_number),
            issued_unix=int(time.time()),
            expires_unix=int(cert.not_valid_after_utc.timestamp()),
            invite_id=invite_id,
        )
        await self.store.put(keys.member(self.mesh_id, node), member)
        logger.info("admitted node %s as %s", node, role)
        return cert

    async def _node_is_live(self, node: str) -> bool:
        workers, _ = await self.store.get_prefix(keys.workers(self.mesh_id, node), pb.WorkerRecord)
        if workers:
            return True
        services, _ = await self.store.get_prefix(keys.services(self.mesh_id), pb.ServiceRecord)
        return any(s.node == node for s in services.values())

    async def revoke(self, node: str) -> list[int]:
        """`node` is out: its etcd user goes (its next request fails), its certificates are
        listed as revoked (services and etcd refuse them), and the leases of its records
        are revoked, so gateways stop routing to it at once."""
        member = await self.store.get(keys.member(self.mesh_id, node), pb.Member)
        if member is None:
            raise NotFound(f"no node '{node}' in this mesh")
        if member.role == pki.AUTHORITY:
            raise InvalidRequest("the authority cannot be revoked")
        serials = [int(member.serial)]
        await self._revoke_serials(node, serials)
        await self.store.delete(keys.member(self.mesh_id, node))
        await self._drop_leases(node)
        logger.info("revoked node %s", node)
        return serials

    async def _revoke_serials(self, node: str, serials: list[int]) -> None:
        if self._auth is not None:
            await self._auth.delete_user(node)
        now = int(time.time())
        for serial in serials:
            record = pb.Revocation(node=node, serial=str(serial), revoked_unix=now)
            await self.store.put(keys.revocation(self.mesh_id, serial), record)
        revoked, _ = await self.store.get_prefix(keys.revocations(self.mesh_id), pb.Revocation)
        self.files.write_crl(sorted(int(r.serial) for r in revoked.values()))

    async def _drop_leases(self, node: str) -> None:
        leases = set()
        workers, _ = await self.store.get_prefix(keys.workers(self.mesh_id, node), pb.WorkerRecord)
        services, _ = await self.store.get_prefix(keys.services(self.mesh_id), pb.ServiceRecord)
        owned = [*workers, *(k for k, s in services.items() if s.node == node)]
        for key in owned:
            found = await self.store.get_raw(key)
            if found is not None and found[1]:
                leases.add(found[1])
        for lease in leases:
            await self.store.revoke_lease(lease)

    async def members(self) -> list[pb.Member]:
        found, _ = await self.store.get_prefix(keys.members(self.mesh_id), pb.Member)
        return sorted(found.values(), key=lambda m: m.node)


def routes(authority: Authority) -> web.Application:
    """The authority's HTTPS door. Served with `server_context(optional client certificate)`:
    `/v1/ca` and `/v1/enrol` need none; the rest need a serving node's."""
    app = web.Application(client_max_size=MAX_BODY, middlewares=[_json_errors])

    async def ca(request: web.Request) -> web.Response:
        return web.Response(body=pki.pem(authority.ca), content_type="application/x-pem-file")

    async def enrol(request: web.Request) -> web.Response:
        body = await _json_body(request)
        hosts = tuple(str(h)[:255] for h in body.get("hosts", [])[:8])
        cert = await authority.enrol(_text(body, "invite"), _text(body, "csr").encode(), hosts)
        identity = pki.identity_of(cert)
        return web.json_response(
            {
                "certificate": pki.pem(cert).decode(),
                "ca": pki.pem(authority.ca).decode(),
                "node": identity.node,
                "role": identity.role,
                "mesh_id": authority.mesh_id,
                "mesh_name": authority.mesh_name,
                "etcd": authority.etcd,
                "authority": authority.address,
            }
        )

    async def invites(request: web.Request) -> web.Response:
        await _serving_peer(request, authority)
        body = await _json_body(request)
        token = await authority.invite(
            role=_text(body, "role", pki.NODE),
            ttl_s=_number(body, "ttl_s", 0),
            uses=int(_number(body, "uses", -1)),
        )
        return web.json_response({"token": token.encode(), "expires": token.expires})

    async def revoke(request: web.Request) -> web.Response:
        await _serving_peer(request, authority)
        body = await _json_body(request)
        serials = await authority.revoke(_text(body, "node"))
        return web.json_response({"node": body["node"], "revoked": [str(s) for s in serials]})

    async def members(request: web.Request) -> web.Response:
        await _serving_peer(request, authority)
        found = await authority.members()
        return web.json_response(
            {
                "members": [
                    {"node": m.node, "role": m.role, "issued": m.issued_unix, "serial": m.serial}
                    for m in found
                ]
            }
        )

    app.router.add_get("/v1/ca", ca)
    app.router.add_post("/v1/enrol", enrol)
    app.router.add_post("/v1/invites", invites)
    app.router.add_post("/v1/revoke", revoke)
    app.router.add_get("/v1/members", members)
    return app


async def open_door(authority: Authority, host: str, port: int) -> web.AppRunner:
    """The authority's HTTPS door, listening; `await runner.cleanup()` closes it."""
    runner = web.AppRunner(routes(authority), access_log=None)
    await runner.setup()
    context = authority.files.credentials.server_context(client_cert_required=False)
    await web.TCPSite(runner, host, port, ssl_context=context).start()
    return runner


@web.middleware
async def _json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except MeshError as exc:
        return web.json_response(openai_body(exc), status=exc.http_status)
    except web.HTTPException as exc:
        error = MeshError(exc.reason, http_status=exc.status)
        return web.json_response(openai_body(error), status=exc.status)
    except Exception:
        logger.exception("the authority failed on %s %s", request.method, request.path)
        error = MeshError("the mesh's authority failed; its node's log says why")
        return web.json_response(openai_body(error), status=500)


async def _serving_peer(request: web.Request, authority: Authority) -> pki.Identity:
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    peer = access.cert_identity(pki.pem_from_der(der)) if der else None
    revoked, _ = await authority.store.get_prefix(
        keys.revocations(authority.mesh_id), pb.Revocation
    )
    reason = access.refusal(
        peer,
        mesh_id=authority.mesh_id,
        allowed=access.SERVING,
        revoked={int(r.serial) for r in revoked.values()},
    )
    if reason is not None:
        raise Forbidden(reason)
    assert peer is not None
    return peer


async def _json_body(request: web.Request) -> dict:
    try:
        body = await request.json()
    except ValueError as exc:
        raise InvalidRequest("the request body must be a JSON object") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return body


def _text(body: dict, name: str, default: str | None = None) -> str:
    value = body.get(name, default)
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"'{name}' must be a non-empty string")
    return value


def _number(body: dict, name: str, default: float) -> float:
    value = body.get(name, default)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise InvalidRequest(f"'{name}' must be a number")
    return float(value)
