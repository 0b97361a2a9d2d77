"""The store's leader killed under load: a mesh on a three-member etcd cluster (given with
--etcd), requests streaming, the etcd leader SIGKILLed. No request may be lost, and the store
must keep working (the mesh writes and reads it again) with the two members left."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aetcd
import pytest
from harness import local_serve
from load import Load, judge

from meshllm.cli.etcd import find_etcd
from meshllm.core.ports import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.faults, pytest.mark.timeout(600)]


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"


def start_cluster(data: Path) -> list[Member]:
    members = [Member(f"m{i}", free_port(), free_port()) for i in range(3)]
    cluster = ",".join(f"{m.name}=http://127.0.0.1:{m.peer_port}" for m in members)
    for member in members:
        member.process = subprocess.Popen(
            [
                find_etcd(), "--name", member.name, "--data-dir", str(data / member.name),
                "--listen-client-urls", f"http://{member.endpoint}",
                "--advertise-client-urls", f"http://{member.endpoint}",
                "--listen-peer-urls", f"http://127.0.0.1:{member.peer_port}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{member.peer_port}",
                "--initial-cluster", cluster, "--initial-cluster-state", "new",
                "--log-level", "error", "--logger", "zap",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
    asyncio.run(_elected(members))
    return members


async def _elected(members: list[Member]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if await _leader(members) is not None:
            return
        await asyncio.sleep(0.2)
    raise AssertionError("the etcd cluster elected no leader")


async def _leader(members: list[Member]) -> Member | None:
    for member in members:
        try:
            async with aetcd.Client(host="127.0.0.1", port=member.client_port, timeout=2) as c:
                status = await c.status()
        except Exception:
            continue
        if status.leader is not None:
            ports = {url.rsplit(":", 1)[1] for url in status.leader.client_urls}
            return next((m for m in members if str(m.client_port) in ports), None)
    return None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Member]]:
    members = start_cluster(tmp_path_factory.mktemp("etcd-cluster"))
    try:
        yield members
    finally:
        for member in members:
            if member.process is not None:
                member.process.kill()
                member.process.wait(10)


def test_the_store_leader_dies_under_load(
    cluster: list[Member], tiny_model: Path, tmp_path: Path, record
) -> None:  # type: ignore[no-untyped-def]
    etcd = ",".join(m.endpoint for m in cluster)
    serve = local_serve(tmp_path, tiny_model, extra=("--etcd", etcd))
    try:
        serve.wait_event("model_ready")
        load = Load(serve.api, tiny_model.stem, streams=4).start()
        time.sleep(2)
        leader = asyncio.run(_leader(cluster))
        assert leader is not None and leader.process is not None
        killed_at = time.monotonic()
        leader.process.kill()  # SIGKILL
        survivors = [m for m in cluster if m is not leader]
        deadline = time.monotonic() + 30
        while asyncio.run(_leader(survivors)) is None:
            assert time.monotonic() < deadline, "no new leader"
            time.sleep(0.2)
        elected_s = time.monotonic() - killed_at
        time.sleep(5)  # keep the load on past several lease renewals on the new leader
        verdict = judge(load.stop(), killed_at, 0.0)
        record(f"etcd leader SIGKILL, 3 members (new leader in {elected_s:.1f} s)", verdict)
        assert verdict.failed == 0 and verdict.requests > 0
        assert tiny_model.stem in serve.served()  # the mesh still reads the store
        assert not [e for e in serve.events if e.get("event") == "restart"]
    finally:
        serve.stop()
