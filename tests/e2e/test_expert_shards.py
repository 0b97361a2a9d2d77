"""Expert shards for real: nodes in their own network namespaces, each offering less memory
than a generated mixture of experts (8 experts, top 2, routed so that experts 0-3 always
win) needs whole but enough for 6 of its experts. Only n1 has the file: its registry ranks
the experts (llama-imatrix), writes each node's shard, measures it against the full model
(llama-perplexity) and streams it to the other node, which never sees the full file. Each
node runs its own llama-server on its shard.

- Two shards of 6 cover the 8 experts, so two nodes serve; every shard holds the core of
  the four experts the router uses, so the mesh answers token for token as the full model
  does; the store (what /api/status and ExplainPlacement show) has each shard's experts and
  measured quality.
- One session (X-Session-Id) always lands on the same node; when a node is killed, only the
  sessions it held move and the rest stay where they were; a node that joins afterwards
  takes the lost shard, the same experts, streamed from n1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from harness import ServeProcess, lab_mesh, lab_node, wait_for
from test_pipeline_split import CONTEXT, PROMPT, solo_answer

from meshllm.cli.make_model import ModelShape, cached_model
from meshllm.core import keys, pki
from meshllm.core.invite import decode_token
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.store import EtcdStore
from meshllm.registry.gguf_facts import read_facts

pytestmark = [pytest.mark.e2e, pytest.mark.netns, pytest.mark.slow]
SHAPE = ModelShape(
    layers=4, embedding=256, feed_forward=1024, heads=4, kv_heads=2, name="shard-moe",
    experts=8, experts_used=2, router="pairs", seed=5,
)  # fmt: skip
SESSIONS = [f"conversation-{i}" for i in range(12)]


def budget_for(path: Path, experts: float) -> int:
    """Memory that holds the trunk and `experts` experts, on placement's terms (weights +
    10 %, the KV cache for CONTEXT, 128 MiB headroom)."""
    facts = read_facts(path)
    trunk = (path.stat().st_size - facts.expert_tensor_bytes) * 1.1
    per_expert = facts.expert_tensor_bytes * 1.1 / facts.expert_count
    return int(trunk + facts.kv_cache_bytes(CONTEXT) + 128 * 2**20 + experts * per_expert)


@pytest.fixture(scope="module")
def moe_model() -> Path:
    return cached_model(SHAPE)


@dataclass
class Mesh:
    nodes: dict[str, ServeProcess]
    token: str
    state: Path
    later: ServeProcess  # n3, started by the test that needs it
    model: str  # the name it is served under

    def __getitem__(self, name: str) -> ServeProcess:
        return self.nodes[name]

    async def shards(self) -> list[tuple[pb.Assignment, pb.ShardRecord | None]]:
        """Every shard assignment of the model, with the record of its measured quality."""
        mesh_id = decode_token(self.token).mesh_id
        credentials = pki.Credentials(self.state / "n1" / "credentials")
        etcd = decode_token(self.token).etcd
        async with EtcdStore.connect(etcd, credentials=credentials, wait_s=5) as store:
            found, _ = await store.get_prefix(keys.assignments(mesh_id), pb.Assignment)
            records, _ = await store.get_prefix(keys.shards(mesh_id, self.model), pb.ShardRecord)
        measured = {r.spec.shard_id: r for r in records.values()}
        return sorted(
            ((a, measured.get(a.shard.shard_id)) for a in found.values()
             if a.role == pb.ASSIGNMENT_ROLE_SHARD),
            key=lambda pair: pair[0].node,
        )  # fmt: skip


@pytest.fixture(scope="module")
def mesh(moe_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    vram = f"{budget_for(moe_model, 6.5) / 1e9:.4f}"
    common = ["--max-vram", vram, "--context", str(CONTEXT), "--threads", "1", "--parallel", "2"]
    with lab_mesh(tmp_path_factory, "shards", 3, "the expert-shard suite") as (lab, nodes, state):
        h1, h2, h3 = lab.hosts
        first = lab_node(h1, "n1", state, "serve", "--gguf", str(moe_model), *common)
        nodes["n1"] = first.start()
        token = first.wait_event("ready")["token"]
        nodes["n2"] = lab_node(h2, "n2", state, "serve", "--join", token, *common).start()
        nodes["n2"].wait_event("ready")
        later = lab_node(h3, "n3", state, "serve", "--join", token, *common)
        yield Mesh(nodes, token, state, later, moe_model.stem)


def landed(node: ServeProcess, model: str, session: str) -> str:
    """The node that served one turn of `session`."""
    body = {"model": model, "messages": PROMPT, "max_tokens": 4, "temperature": 0}
    reply = httpx.post(
        f"{node.api}/chat/completions",
        json=body,
        headers={**node.headers, "X-Session-Id": session},
        timeout=120,
    )
    assert reply.status_code == 200, reply.text
    return reply.headers["x-mesh-node"]


def served_by(mesh: Mesh) -> list[str]:
    return mesh["n1"].served().get(mesh.model, [])


async def test_each_node_serves_a_measured_shard_that_answers_as_the_full_model(
    mesh: Mesh, moe_model: Path, llama_server_bin: str
) -> None:
    wait_for(lambda: served_by(mesh) == ["n1", "n2"], 240)
    shards = await mesh.shards()
    assert [a.node for a, _ in shards] == ["n1", "n2"]
    assert len({a.group_id for a, _ in shards}) == 1
    for a, record in shards:
        assert a.shard.expert_count == 6 and a.shard.core == 4 and len(a.shard.plan) == 2
        assert all({0, 1, 2, 3} <= set(layer.experts) for layer in a.shard.layers)
        assert record is not None and record.passed and record.same_top == 1.0, record
        assert record.node == "n1"  # measured where the file is
    covered = {e for a, _ in shards for layer in a.shard.layers for e in layer.experts}
    assert covered == set(range(8))
    copies = list((mesh.state / "n2" / "llama-cache" / "shards").rglob("*.gguf"))
    assert len(copies) == 1  # the shard came over the wire; the full file never did
    assert copies[0].stat().st_size < moe_model.stat().st_size
    expected = solo_answer(llama_server_bin, moe_model)
    reply = (
        mesh["n2"]
        .client(timeout=120)
        .chat.completions.create(
            model=mesh.model, messages=PROMPT, max_tokens=24, temperature=0, seed=1
        )
    )
    assert reply.choices[0].message.content == expected
    assert_status_shows_the_shards(mesh["n1"], mesh.model)


def assert_status_shows_the_shards(node: ServeProcess, model: str) -> None:
    """`mesh-llm status` lists the model's shards; `status MODEL` names each shard's node,
    experts and measured quality; neither prints the invite token."""

    def status(*args: str) -> str:
        argv = [sys.executable, "-m", "meshllm.cli", "status", "--console", node.console, *args]
        env = {**os.environ, "MESH_LLM_API_KEY": node.api_key}
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert f"{model}  serving  2      2 shards on n1, n2" in status()
    shown = status(model)
    members = [line for line in shown.splitlines() if "  shard  " in line]
    assert [line.split()[0].split("/")[0] for line in members] == ["n1", "n2"], shown
    for line in members:
        assert "6 experts per layer" in line and "quality passes" in line, line
        assert "same top token 100%" in line and "measured on n1" in line, line
    (placement,) = json.loads(status(model, "--json"))["placements"]
    assert placement["kind"] == "shards" and len(placement["members"]) == 2
    for member in placement["members"]:
        assert all({0, 1, 2, 3} <= set(layer) for layer in member["expert_ids"]), member
    assert json.loads(status("--json"))["this_node"]["invite_token"] == ""


async def test_a_session_stays_on_its_node_and_a_lost_node_moves_only_its_own(
    mesh: Mesh,
) -> None:
    wait_for(lambda: served_by(mesh) == ["n1", "n2"], 240)
    entry = mesh["n1"]
    before = {s: landed(entry, mesh.model, s) for s in SESSIONS}
    again = {s: landed(entry, mesh.model, s) for s in SESSIONS}
    assert again == before  # every turn, the same node
    assert set(before.values()) == {"n1", "n2"}, before  # and the sessions spread over both
    lost = {a.node: a.shard.shard_id for a, _ in await mesh.shards()}["n2"]
    victim = mesh["n2"]
    assert victim.host is not None
    killed = time.monotonic()
    victim.host.kill_all()
    wait_for(lambda: served_by(mesh) == ["n1"], 60)
    moved_after = time.monotonic() - killed
    after = {s: landed(entry, mesh.model, s) for s in SESSIONS}
    assert after == dict.fromkeys(SESSIONS, "n1")  # n2's sessions moved; n1's never did
    moved = sum(n == "n2" for n in before.values())

    mesh.nodes["n3"] = mesh.later.start()  # a node with room joins: it takes the lost shard
    joined = time.monotonic()
    wait_for(lambda: served_by(mesh) == ["n1", "n3"], 120)
    replaced_after = time.monotonic() - joined
    shards = {a.node: a for a, _ in await mesh.shards()}
    assert sorted(shards) == ["n1", "n3"]
    assert shards["n3"].shard.shard_id == lost  # the same experts as the shard that was lost
    assert shards["n3"].group_id == shards["n1"].group_id
    mesh["n3"].wait_event("ready")
    assert landed(mesh["n3"], mesh.model, SESSIONS[0]) in ("n1", "n3")  # its API routes too
    print(
        f"\nlost shard node: {moved} of {len(SESSIONS)} sessions moved {moved_after:.1f}s "
        f"after the kill; a node joining took the lost shard in {replaced_after:.1f}s"
    )
