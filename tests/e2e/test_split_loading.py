"""How much a split's peer receives over RPC while its host loads, counted in the host's
tunnel, for a generated model whose every weight tensor exceeds llama.cpp's 10 MiB hash
threshold (2048 wide, as many KV heads as heads, f32):

- a peer whose node holds a copy of the GGUF (in its models directory) fills its rpc-server
  cache from it before starting: ≤ 1 % of its layers' bytes cross the link;
- a peer without the file receives its own layers once — not the whole model — and keeps
  them: the next load of the same split sends ≤ 1 % again.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness import ServeProcess, lab_mesh, lab_node
from netns import Lab

from meshllm.cli.make_model import ModelShape, cached_model
from meshllm.core import keys, pki
from meshllm.core.gguf_header import read_header
from meshllm.core.invite import decode_token
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.store import EtcdStore

pytestmark = [pytest.mark.e2e, pytest.mark.netns, pytest.mark.slow]
WIDE = ModelShape(
    layers=2, embedding=2048, feed_forward=5632, heads=16, kv_heads=16, name="split-wide", seed=5
)
COMMON = ("--context", "512", "--threads", "1")


@dataclass
class Lab3:
    lab: Lab
    nodes: dict[str, ServeProcess]
    token: str
    state: Path

    async def records(self) -> dict[str, pb.WorkerRecord]:
        token = decode_token(self.token)
        credentials = pki.Credentials(self.state / "n1" / "credentials")
        for attempt in range(20):  # etcd restarts once, when the first node from elsewhere joins
            try:
                async with EtcdStore.connect(token.etcd, credentials=credentials, wait_s=5) as st:
                    found, _ = await st.get_prefix(keys.workers(token.mesh_id), pb.WorkerRecord)
                    assigned, _ = await st.get_prefix(
                        keys.assignments(token.mesh_id), pb.Assignment
                    )
                break
            except Exception:
                if attempt == 19:
                    raise
                await asyncio.sleep(0.5)
        self.assignments = {a.node: a for a in assigned.values()}
        return {r.node: r for r in found.values()}

    async def host_load_bytes(self, model: str) -> int | None:
        """Bytes the ready host instance of `model` on n1 sent its peers while loading."""
        record = (await self.records()).get("n1")
        for instance in record.instances if record else []:
            if instance.model == model and instance.state == pb.INSTANCE_STATE_READY:
                return int(instance.rpc_load_bytes)
        return None

    async def peer_node(self) -> str:
        await self.records()
        return next(a.node for a in self.assignments.values() if a.role == pb.ASSIGNMENT_ROLE_PEER)


@pytest.fixture(scope="module")
def wide_model() -> Path:
    return cached_model(WIDE)


@pytest.fixture(scope="module")
def mesh(wide_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab3]:
    with lab_mesh(tmp_path_factory, "loading", 3, "the split suite") as (lab, nodes, state):
        copy = state / "n2-models"  # n2 holds a copy of the file under the model's name
        copy.mkdir()
        os.link(wide_model, copy / wide_model.name)
        h1, h2, _ = lab.hosts
        first = lab_node(h1, "n1", state, "serve", "--gguf", str(wide_model), "--split", *COMMON)
        nodes["n1"] = first.start()
        token = first.wait_event("ready")["token"]
        second = lab_node(
            h2, "n2", state, "serve", "--join", token, *COMMON,
            env={"MESH_MODELS_DIR": str(copy)},
        )  # fmt: skip
        nodes["n2"] = second.start()
        second.wait_event("ready")
        yield Lab3(lab, nodes, token, state)


def peer_bytes(model: Path, layers: set[int]) -> int:
    """Every byte of the given layers' tensors."""
    header = read_header(model)
    return sum(
        t.n_bytes for t in header.tensors
        if t.name.startswith("blk.") and int(t.name.split(".")[1]) in layers
    )  # fmt: skip


async def wait_load_bytes(mesh: Lab3, model: str, timeout: float = 180) -> int:
    deadline = time.monotonic() + timeout
    while (sent := await mesh.host_load_bytes(model)) is None:
        assert time.monotonic() < deadline, "the split never became ready"
        await asyncio.sleep(0.5)
    return sent


async def test_a_peer_holding_the_file_receives_almost_nothing(
    mesh: Lab3, wide_model: Path
) -> None:
    sent = await wait_load_bytes(mesh, wide_model.stem)
    assert await mesh.peer_node() == "n2"
    layer_bytes = peer_bytes(wide_model, {1})  # a CPU host with half the layers keeps layer 0
    print(f"\npeer with the file: {sent} bytes over RPC for {layer_bytes} bytes of layers")
    assert sent <= 0.01 * layer_bytes


async def test_a_peer_without_the_file_receives_its_layers_once(
    mesh: Lab3, wide_model: Path
) -> None:
    h3 = mesh.lab.hosts[2]
    mesh.nodes["n3"] = lab_node(h3, "n3", mesh.state, "serve", "--join", mesh.token, *COMMON)
    mesh.nodes["n3"].start().wait_event("ready")
    mesh.lab.hosts[1].kill_all()  # n2 and its copy of the file are gone
    deadline = time.monotonic() + 180
    while True:
        sent = await mesh.host_load_bytes(wide_model.stem)
        if sent is not None and await mesh.peer_node() == "n3":
            break
        assert time.monotonic() < deadline, "never re-planned onto n3"
        await asyncio.sleep(0.5)
    layer_bytes = peer_bytes(wide_model, {1})
    size = wide_model.stat().st_size
    print(f"\npeer without the file, first load: {sent} bytes ({layer_bytes} in its layers, "
          f"{size} in the file)")  # fmt: skip
    assert layer_bytes <= sent <= 1.01 * layer_bytes
    assert sent < 0.5 * size
    # a second load of the same split: the peer's cache has its layers now
    os.kill(mesh.nodes["n1"].pid_of("llama-server"), signal.SIGKILL)
    deadline = time.monotonic() + 120
    while True:
        again = await mesh.host_load_bytes(wide_model.stem)
        record = (await mesh.records())["n1"]
        restarted = any(i.restart_count > 0 for i in record.instances)
        if again is not None and restarted:
            break
        assert time.monotonic() < deadline, "the host never came back"
        await asyncio.sleep(0.5)
    print(f"second load: {again} bytes")
    assert again <= 0.01 * layer_bytes
