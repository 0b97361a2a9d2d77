"""The mesh's authority against a real etcd that takes only mesh certificates: enrolment over
its HTTPS door, the role fences etcd enforces, invites that expire or run out, revocation."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from meshllm.cli.authority import Authority, AuthorityFiles, open_door
from meshllm.cli.enrol import AuthorityClient, Membership, enrol
from meshllm.cli.etcd import EtcdServer, EtcdTls
from meshllm.core import keys, pki
from meshllm.core.errors import MeshError, Unavailable
from meshllm.core.invite import InvalidToken, decode_token
from meshllm.core.ports import free_port
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.store import EtcdStore

MESH = "m-authority-test"


@dataclasses.dataclass
class Mesh:
    authority: Authority
    etcd: EtcdServer
    door: web.AppRunner
    home: Path

    def store(self, credentials: pki.Credentials, **options: object):  # type: ignore[no-untyped-def]
        return EtcdStore.connect([self.etcd.local_endpoint], credentials=credentials, **options)

    async def join(self, role: str = pki.NODE, **invite: object) -> tuple[Path, Membership]:
        token = await self.authority.invite(role=role, **invite)  # type: ignore[arg-type]
        directory = self.home / uuid.uuid4().hex[:8]
        membership = await enrol(token, f"n-{uuid.uuid4().hex[:8]}", (), directory)
        return directory, membership


@pytest.fixture(scope="module")
async def mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mesh]:
    home = tmp_path_factory.mktemp("authority")
    files = AuthorityFiles(home / "authority")
    files.create(MESH, ("127.0.0.1",))
    etcd = EtcdServer(home / "etcd", tls=EtcdTls(files.credentials, files.crl_path))
    await etcd.start()
    port = free_port()
    try:
        async with EtcdStore.connect([etcd.local_endpoint], credentials=files.credentials) as root:
            authority = Authority(
                files, MESH, root, etcd=[etcd.local_endpoint], address=f"127.0.0.1:{port}"
            )
            await authority.prepare_store()
            door = await open_door(authority, "127.0.0.1", port)
            try:
                yield Mesh(authority, etcd, door, home)
            finally:
                await door.cleanup()
    finally:
        await etcd.stop()


async def test_an_enrolled_node_writes_the_mesh_and_only_reads_the_authority(mesh: Mesh) -> None:
    directory, membership = await mesh.join()
    assert membership.role == pki.NODE and membership.mesh_id == MESH
    identity = pki.Credentials(directory).identity()
    assert (identity.node, identity.role, identity.mesh_id) == (membership.node, "node", MESH)
    async with mesh.store(pki.Credentials(directory)) as store:
        await store.put(keys.endpoint(MESH, "m", "i"), pb.Endpoint(model="m"))
        with pytest.raises(Exception, match="permission denied"):
            await store.put(keys.invite(MESH, "forged"), pb.Invite(id="forged", uses_left=-1))
        with pytest.raises(Exception, match="permission denied"):
            await store.put("/elsewhere", b"x")


async def test_an_api_client_reads_but_cannot_publish_an_endpoint(mesh: Mesh) -> None:
    directory, membership = await mesh.join(role=pki.CLIENT)
    assert membership.role == pki.CLIENT
    async with mesh.store(pki.Credentials(directory)) as store:
        await store.get_prefix(keys.endpoints(MESH), pb.Endpoint)
        with pytest.raises(Exception, match="permission denied"):
            await store.put(keys.endpoint(MESH, "m", "forged"), pb.Endpoint(model="m"))
        with pytest.raises(Exception, match="permission denied"):
            await store.put(keys.worker(MESH, "n", "w"), pb.WorkerRecord())
        lease = await store.grant_lease(5)  # its gateway announces itself
        await store.put(keys.service(MESH, "gateway", "g"), pb.ServiceRecord(), lease=lease)
        demand = await store.grant_lease(5)  # and records the demand its requests show
        await store.put(
            keys.demand_entry(MESH, "m", "gateway-g"), pb.Demand(model="m"), lease=demand
        )


async def test_no_certificate_no_store(mesh: Mesh) -> None:
    with pytest.raises(Unavailable):
        async with EtcdStore.connect([mesh.etcd.local_endpoint], wait_s=1):
            pass


async def test_a_forged_invite_with_a_valid_checksum_gets_nothing(
    mesh: Mesh, tmp_path: Path
) -> None:
    token = await mesh.authority.invite()
    forged = dataclasses.replace(token, invite=token.invite_id + ".not-the-secret")
    with pytest.raises(MeshError, match="not valid in this mesh") as caught:
        await enrol(forged, "forger", (), tmp_path)
    assert caught.value.http_status == 403
    assert not pki.Credentials(tmp_path).exists()


async def test_an_expired_invite_is_refused(mesh: Mesh, tmp_path: Path) -> None:
    token = await mesh.authority.invite(ttl_s=1)
    with pytest.raises(InvalidToken, match="expired"):  # checked before calling
        await enrol(dataclasses.replace(token, expires=int(time.time()) - 1), "late", (), tmp_path)
    await asyncio.sleep(1.1)
    with pytest.raises(MeshError, match="expired"):  # and by the authority
        await enrol(dataclasses.replace(token, expires=0), "late", (), tmp_path)


async def test_a_one_time_invite_works_once(mesh: Mesh, tmp_path: Path) -> None:
    token = await mesh.authority.invite(uses=1)
    await enrol(token, f"once-{uuid.uuid4().hex[:6]}", (), tmp_path / "a")
    with pytest.raises(MeshError, match="not valid"):
        await enrol(token, f"twice-{uuid.uuid4().hex[:6]}", (), tmp_path / "b")


async def test_a_token_pinning_another_ca_sends_nothing(mesh: Mesh, tmp_path: Path) -> None:
    token = await mesh.authority.invite()
    _, other_ca = pki.create_ca("m-other")
    with pytest.raises(InvalidToken, match="not the token's"):
        await enrol(dataclasses.replace(token, ca=pki.fingerprint(other_ca)), "x", (), tmp_path)


async def test_a_live_nodes_name_is_not_taken_over(mesh: Mesh, tmp_path: Path) -> None:
    directory, membership = await mesh.join()
    async with mesh.store(pki.Credentials(directory)) as store:
        lease = await store.grant_lease(30)
        await store.put(keys.worker(MESH, membership.node, "w"), pb.WorkerRecord(), lease=lease)
        with pytest.raises(MeshError, match="in use") as caught:
            await enrol(await mesh.authority.invite(), membership.node, (), tmp_path)
        assert caught.value.http_status == 409
        await store.revoke_lease(lease)
    await enrol(await mesh.authority.invite(), membership.node, (), tmp_path)  # gone: taken over


async def test_invites_and_revocation_need_a_serving_node(mesh: Mesh) -> None:
    client_dir, _ = await mesh.join(role=pki.CLIENT)
    with pytest.raises(MeshError, match="needs a serving node") as caught:
        await AuthorityClient(client_dir).invite("node", 0, -1)
    assert caught.value.http_status == 403
    node_dir, _ = await mesh.join()
    minted = await AuthorityClient(node_dir).invite("client", 3600, 1)
    token = decode_token(minted["token"])
    assert (token.mesh_id, token.role) == (MESH, "client") and token.expires > time.time()


async def test_a_revoked_node_loses_the_store_at_once(mesh: Mesh) -> None:
    victim_dir, victim = await mesh.join()
    admin_dir, _ = await mesh.join()
    victim_creds = pki.Credentials(victim_dir)
    async with mesh.store(victim_creds) as store:
        lease = await store.grant_lease(60)
        await store.put(keys.worker(MESH, victim.node, "w"), pb.WorkerRecord(), lease=lease)
        reply = await AuthorityClient(admin_dir).revoke(victim.node)
        assert reply["revoked"] == [str(victim_creds.identity().serial)]
        with pytest.raises(Exception, match="permission denied"):  # the open connection
            await store.get_prefix(keys.endpoints(MESH), pb.Endpoint)
    async with mesh.store(pki.Credentials(admin_dir)) as store:
        workers, _ = await store.get_prefix(keys.workers(MESH, victim.node), pb.WorkerRecord)
        assert workers == {}  # its lease went with it
        revoked, _ = await store.get_prefix(keys.revocations(MESH), pb.Revocation)
        assert str(victim_creds.identity().serial) in {r.serial for r in revoked.values()}
    with pytest.raises(Unavailable):  # a new connection: etcd's CRL refuses the handshake
        async with mesh.store(victim_creds, wait_s=1):
            pass
    with pytest.raises(MeshError, match="revoked"):
        await AuthorityClient(victim_dir).invite("node", 0, -1)
