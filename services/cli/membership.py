"""How a `serve` or `client` becomes a member of a mesh: the founding node creates the mesh's
CA, starts its etcd behind mutual TLS and opens the authority's door; any other node enrols
with an invite token. Either way the result is a `MeshAccess`: what this node's services are
configured with. A node started again on the same --state-dir keeps its membership (and the
founding node its mesh)."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from meshllm.core import pki
from meshllm.core.errors import InvalidRequest, MeshError
from meshllm.core.invite import InviteToken
from meshllm.core.ports import free_port
from meshllm.core.store import EtcdStore

from .authority import Authority, AuthorityFiles, open_door
from .enrol import Membership, enrol
from .etcd import EtcdServer, EtcdTls
from .network import bind_address

INVITE_TTL_S = 24 * 3600  # the tokens a founding node prints


class MembershipError(Exception):
    """A problem the user can fix; printed as one line."""


@dataclass
class MeshAccess:
    mesh_id: str
    etcd: list[str]  # as this node reaches etcd
    credentials: Path  # this node's credentials directory
    node: str
    role: str
    etcd_tls: bool = True
    mesh_name: str = ""
    invites: dict[str, InviteToken] = field(default_factory=dict)  # founder: role → token

    @property
    def tls(self) -> pki.Credentials:
        return pki.Credentials(self.credentials)


async def join(token: InviteToken, node: str, host: str, directory: Path) -> MeshAccess:
    """Enrol with `token`, or keep the membership this directory already holds for that
    mesh."""
    membership = _existing(directory, token.mesh_id)
    if membership is None:
        try:
            membership = await enrol(token, node, (host,), directory)
        except MeshError as exc:
            raise MembershipError(exc.message) from exc
    return MeshAccess(
        mesh_id=membership.mesh_id,
        etcd=membership.etcd,
        credentials=directory,
        node=membership.node,
        role=membership.role,
        mesh_name=membership.mesh_name,
    )


def _existing(directory: Path, mesh_id: str) -> Membership | None:
    try:
        membership = Membership.load(directory)
    except InvalidRequest:
        return None
    if membership.mesh_id != mesh_id or not pki.Credentials(directory).exists():
        return None
    return membership


class Founder:
    """The founding node's part: the mesh's CA and authority, and its etcd (`start_etcd`
    supervises it). Close with `close()`."""

    def __init__(
        self,
        state_dir: Path,
        node: str,
        host: str,
        authority_port: int = 0,
        *,
        credentials_dir: Path | None = None,
    ) -> None:
        self.files = AuthorityFiles(state_dir / "authority")
        self.credentials_dir = credentials_dir or state_dir / "credentials"
        self.node = node
        self.host = host
        self.authority_port = authority_port or free_port(bind_address(host))
        self.etcd: EtcdServer | None = None
        self.authority: Authority | None = None
        self._exit = contextlib.AsyncExitStack()

    def prepare(self, mesh_id: str = "") -> str:
        """The mesh id: kept from an earlier run on this state dir, else a new mesh (named
        `mesh_id` when given)."""
        membership = _existing_founder(self.credentials_dir, self.files)
        if membership is not None:
            return membership.mesh_id
        if self.files.exists():  # the CA was made, this node not yet admitted
            return pki.identity_of(self.files.load()[1]).mesh_id
        mesh_id = mesh_id or f"m-{secrets.token_hex(6)}"
        self.files.create(mesh_id, (self.host,))
        return mesh_id

    def etcd_server(self, data_dir: Path, log_path: Path) -> EtcdServer:
        """The mesh's etcd: mutual TLS, loopback until a node elsewhere joins."""
        self.etcd = EtcdServer(
            data_dir,
            host=self.host,
            log_path=log_path,
            tls=EtcdTls(self.files.credentials, self.files.crl_path),
        )
        return self.etcd

    async def open(
        self,
        mesh_id: str,
        etcd: list[str],
        *,
        mesh_name: str,
        external_store: bool,
        expose_store: Callable[[], Awaitable[None]] | None = None,
        local: list[str] | None = None,
    ) -> MeshAccess:
        """Connect to etcd as its root user, prepare it, open the authority's door and admit
        this node. `etcd` is what the tokens name; `local` how this machine reaches it."""
        if local is None:
            local = [self.etcd.local_endpoint] if self.etcd is not None else etcd
        store = await self._exit.enter_async_context(
            EtcdStore.connect(local, credentials=None if external_store else self.files.credentials)
        )

        async def before_member(node: str) -> None:
            if node != self.node and expose_store is not None:
                await expose_store()
                await store.wait_reachable(20.0)

        self.authority = Authority(
            self.files,
            mesh_id,
            store,
            etcd=etcd,
            address=f"{self.host}:{self.authority_port}",
            mesh_name=mesh_name,
            before_member=before_member,
            manage_store=not external_store,
        )
        await self.authority.prepare_store()
        door = await open_door(self.authority, bind_address(self.host), self.authority_port)
        self._exit.push_async_callback(_close_door, door)
        access = await self._admit_self(mesh_id, local, mesh_name)
        access.etcd_tls = not external_store
        return access

    async def _admit_self(self, mesh_id: str, etcd: list[str], mesh_name: str) -> MeshAccess:
        assert self.authority is not None
        membership = _existing_founder(self.credentials_dir, self.files)
        if membership is None:
            key = pki.new_key()
            try:
                cert = await self.authority.admit(
                    self.node, pki.NODE, key.public_key(), (self.host,)
                )
            except MeshError as exc:
                raise MembershipError(exc.message) from exc
            pki.Credentials(self.credentials_dir).save(self.authority.ca, cert, key)
            membership = Membership(
                mesh_id=mesh_id,
                etcd=etcd,
                authority=self.authority.address,
                node=self.node,
                role=pki.NODE,
                mesh_name=mesh_name,
            )
            membership.save(self.credentials_dir)
        return MeshAccess(
            mesh_id=mesh_id,
            etcd=etcd,
            credentials=self.credentials_dir,
            node=membership.node,
            role=pki.NODE,
            mesh_name=mesh_name,
        )

    async def mint_startup_invites(self, publish: bool) -> dict[str, InviteToken]:
        """A serving node's token and an API client's; the first is what a published mesh
        announces (anyone on the network may then join)."""
        assert self.authority is not None
        published = {"published": "1"} if publish else {}
        return {
            pki.NODE: await self.authority.invite(pki.NODE, INVITE_TTL_S, extra=published),
            pki.CLIENT: await self.authority.invite(pki.CLIENT, INVITE_TTL_S),
        }

    async def close(self) -> None:
        await self._exit.aclose()


def _existing_founder(directory: Path, files: AuthorityFiles) -> Membership | None:
    if not files.exists():
        return None
    try:
        membership = Membership.load(directory)
    except InvalidRequest:
        return None
    return membership if pki.Credentials(directory).exists() else None


async def _close_door(door: web.AppRunner) -> None:
    await door.cleanup()
