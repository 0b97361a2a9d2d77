"""Demand brings a lost model back, for real: three nodes in their own network namespaces.

- n1 starts the mesh (its etcd, the gateway the traffic goes through) and offers no memory to
  models; n2 serves a model from its file (`--gguf`); n3 is a standby (`--standby`) that holds
  a copy of the file under the model's name, so the mesh may run the model there.
- Requests for the model flow through n1 and are recorded as demand. n2 is killed (every
  process in its namespace): the scheduler notices the model's last server gone and starts it
  on the standby; the detection and recovery times are printed (docs/BENCHMARKS.md).
- With the traffic stopped, the standby gives the model back once the demand record's TTL
  has passed.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from harness import ServeProcess, lab_mesh, lab_node, wait_for

from meshllm.core import keys, pki
from meshllm.core.invite import decode_token
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.store import EtcdStore

pytestmark = [pytest.mark.e2e, pytest.mark.netns, pytest.mark.slow]
TTL_S = 10  # the gateways' demand records: short, so the give-back is seen here
COMMON = ["--threads", "1", "--parallel", "2", "--context", "512"]
# a model that is hot would get a second replica on the standby before the kill; this suite
# is about the last replica
ENV = {"MESH_TRAFFIC__TTL_S": str(TTL_S), "MESH_DEMAND__BUSY_RPM": "100000"}


@dataclass
class Mesh:
    nodes: dict[str, ServeProcess]
    token: str
    state: Path
    model: str

    def __getitem__(self, name: str) -> ServeProcess:
        return self.nodes[name]

    async def assignments(self) -> list[pb.Assignment]:
        token = decode_token(self.token)
        credentials = pki.Credentials(self.state / "n1" / "credentials")
        async with EtcdStore.connect(token.etcd, credentials=credentials, wait_s=5) as store:
            found, _ = await store.get_prefix(keys.assignments(token.mesh_id), pb.Assignment)
        return [a for a in found.values() if a.model == self.model]


@pytest.fixture(scope="module")
def mesh(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with lab_mesh(tmp_path_factory, "demand", 3, "the demand suite") as (lab, nodes, state):
        copy = state / "n3-models"  # the standby's copy of the file, under the model's name
        copy.mkdir()
        os.link(tiny_model, copy / tiny_model.name)
        h1, h2, h3 = lab.hosts
        first = lab_node(h1, "n1", state, "serve", "--standby", "--max-vram", "0.001", *COMMON,
                         env=ENV)  # fmt: skip
        nodes["n1"] = first.start()
        token = first.wait_event("ready")["token"]
        nodes["n2"] = lab_node(
            h2, "n2", state, "serve", "--join", token, "--gguf", str(tiny_model), *COMMON, env=ENV
        ).start()
        nodes["n3"] = lab_node(
            h3, "n3", state, "serve", "--join", token, "--standby", *COMMON,
            env={**ENV, "MESH_MODELS_DIR": str(copy)},
        ).start()  # fmt: skip
        for name in ("n2", "n3"):
            nodes[name].wait_event("ready")
        yield Mesh(nodes, token, state, tiny_model.stem)


class Traffic:
    """One request every `every` seconds through n1's API, recording who answered when."""

    def __init__(self, node: ServeProcess, model: str, every: float = 0.25) -> None:
        self._node, self._model, self._every = node, model, every
        self.answers: list[tuple[float, int, str]] = []  # (when, status, node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        body = {"model": self._model, "prompt": "hi", "max_tokens": 2, "temperature": 0}
        with httpx.Client(headers=self._node.headers, timeout=30) as client:
            while not self._stop.is_set():
                try:
                    reply = client.post(f"{self._node.api}/completions", json=body)
                    node = reply.headers.get("x-mesh-node", "")
                    self.answers.append((time.monotonic(), reply.status_code, node))
                except httpx.HTTPError:
                    self.answers.append((time.monotonic(), 0, ""))
                self._stop.wait(self._every)

    def first_from(self, node: str, after: float) -> float | None:
        return next((t for t, s, n in self.answers if t > after and s == 200 and n == node), None)


async def test_a_standby_takes_over_the_lost_model_and_gives_it_back(mesh: Mesh) -> None:
    wait_for(lambda: mesh["n1"].served().get(mesh.model) == ["n2"], 120)
    with Traffic(mesh["n1"], mesh.model) as traffic:
        wait_for(lambda: traffic.first_from("n2", 0) is not None, 30)
        await asyncio.sleep(2)  # the gateway's demand record is in the store
        killed = time.monotonic()
        mesh["n2"].host.kill_all()
        detected = None
        while detected is None:
            if any(a.node == "n3" for a in await mesh.assignments()):
                detected = time.monotonic() - killed
            assert time.monotonic() - killed < 30, "no standby took the model"
            await asyncio.sleep(0.1)
        serving = wait_for(lambda: traffic.first_from("n3", killed), 60) - killed
    print(
        f"\nlost model: the standby was assigned it {detected:.1f}s after its last server was "
        f"killed, and answered {serving:.1f}s after (worker lease TTL 3s)"
    )
    assert detected <= 5.0
    assert serving <= 15.0  # plus the weight load, well under a second for this model
    (taken,) = await mesh.assignments()
    assert taken.node == "n3" and taken.origin == ""

    # traffic stopped: the record expires after its TTL, and the standby is free again
    stopped = time.monotonic()
    while await mesh.assignments():
        assert time.monotonic() - stopped < TTL_S + 10, "the standby kept the model"
        await asyncio.sleep(0.2)
    freed = time.monotonic() - stopped
    print(f"traffic stopped: the standby gave the model back after {freed:.1f}s (TTL {TTL_S}s)")
    assert freed >= TTL_S - 6  # not before the record could have expired
    wait_for(lambda: mesh.model not in mesh["n1"].served(), 30)
