"""Mutual TLS on the services' gRPC, with a real server and real certificates: only members
of the mesh get in, only serving nodes change anything, a revoked node is refused at once,
and a registry takes file paths from its own node only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from helpers import issue_credentials

from meshllm.core import pki
from meshllm.core.clients import RegistryClient
from meshllm.core.errors import Forbidden, Unavailable
from meshllm.core.grpc import ServerSecurity, make_server
from meshllm.core.proto.mesh.v1 import registry_pb2_grpc
from meshllm.core.store import EtcdStore, LeaseKeeper
from meshllm.registry.servicer import RegistryServicer
from meshllm.registry.settings import RegistrySettings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ca():  # type: ignore[no-untyped-def]
    return pki.create_ca("m-access")


class Registry:
    def __init__(self, port: int, revoked: set[int]) -> None:
        self.address = f"127.0.0.1:{port}"
        self.revoked = revoked


@pytest.fixture
async def registry(
    store: EtcdStore,
    ca,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> AsyncIterator[Registry]:
    settings = RegistrySettings(
        mesh_id="m-access",
        node="box1",
        models_dir=str(tmp_path / "models"),
        cache_dir=str(tmp_path / "cache"),
    )
    lease = LeaseKeeper(store, ttl_s=5)
    await lease.start()
    servicer = RegistryServicer(settings, store, lease)
    revoked: set[int] = set()
    own = issue_credentials(tmp_path / "box1", ca, "box1")
    server, _, port = make_server(
        "127.0.0.1:0",
        lambda s: registry_pb2_grpc.add_RegistryServiceServicer_to_server(servicer, s),
        ServerSecurity(own, "m-access", revoked),
    )
    await server.start()
    yield Registry(port, revoked)
    await server.stop(0)
    await lease.stop()


async def test_the_own_node_registers_a_path_others_may_not(
    registry: Registry,
    ca,
    tmp_path: Path,
    tiny_model: Path,  # type: ignore[no-untyped-def]
) -> None:
    own = issue_credentials(tmp_path / "own", ca, "box1")
    async with RegistryClient(registry.address, own) as client:
        assert (await client.register(path=str(tiny_model))).facts.block_count == 4
    other = issue_credentials(tmp_path / "other", ca, "box2")
    async with RegistryClient(registry.address, other) as client:
        with pytest.raises(Forbidden, match="only node box1 may register its files by path"):
            await client.register(path="/etc/shadow")
        assert [e.name for e in await client.list()] == [tiny_model.stem]


async def test_an_api_client_reads_and_changes_nothing(
    registry: Registry,
    ca,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    client_creds = issue_credentials(tmp_path / "laptop", ca, "laptop", pki.CLIENT)
    async with RegistryClient(registry.address, client_creds) as client:
        await client.list()
        with pytest.raises(Forbidden, match="needs a serving node"):
            await client.register(name="smollm2")
        with pytest.raises(Forbidden, match="needs a serving node"):
            await client.inspect("/etc/passwd")
        with pytest.raises(Forbidden, match="needs a serving node"):  # nor copies weights
            async for _ in client.read_model("anything", 0):
                pass


async def test_strangers_and_revoked_nodes_are_refused(
    registry: Registry,
    ca,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    async with RegistryClient(registry.address) as plain:  # no TLS at all
        with pytest.raises(Unavailable):
            await plain.list()
    stranger = issue_credentials(tmp_path / "x", pki.create_ca("m-access"), "box1")
    async with RegistryClient(registry.address, stranger) as client:  # another CA
        with pytest.raises(Unavailable):
            await client.list()
    node = issue_credentials(tmp_path / "box3", ca, "box3")
    async with RegistryClient(registry.address, node) as client:
        await client.list()
        registry.revoked.add(node.identity().serial)
        with pytest.raises(Forbidden, match="node 'box3' has been revoked"):
            await client.list()
