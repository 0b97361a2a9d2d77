"""A link cut between nodes, for real: two serving nodes and an API client, each in its own
network namespace; one serving node's link goes down under load and comes back. Requests
through the client's gateway may fail only cleanly, none may hang, and the cut node must
serve again once its link is back."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import ServeProcess, lab_mesh, lab_node
from load import Load, judge, settled_after, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.netns, pytest.mark.faults, pytest.mark.timeout(600)]
IDLE_S = 5  # the client's gateway cuts an answer that says nothing for this long


@pytest.fixture(scope="module")
def lab(
    tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ServeProcess]]:
    with lab_mesh(tmp_path_factory, "cut", 3, "the link-cut fault") as (lab, nodes, state):
        h1, h2, h3 = lab.hosts
        nodes["n1"] = lab_node(
            h1, "n1", state, "serve", "--gguf", str(tiny_model), "--threads", "1"
        )
        nodes["n1"].start()
        ready = nodes["n1"].wait_event("ready")
        nodes["n2"] = lab_node(
            h2, "n2", state, "serve", "--join", ready["token"], "--gguf", str(tiny_model),
            "--threads", "1",
        )  # fmt: skip
        nodes["c3"] = lab_node(
            h3, "c3", state, "client", "--join", ready["client_token"],
            env={"MESH_PROXY__STREAM_IDLE_TIMEOUT_S": str(IDLE_S)},
        )  # fmt: skip
        for name in ("n2", "c3"):
            nodes[name].start()
        for node in nodes.values():
            node.wait_event("ready")
        yield nodes


def link(node: ServeProcess, state: str) -> None:
    assert node.host is not None
    subprocess.run(
        node.host.command(["ip", "link", "set", "eth0", state]), check=True, capture_output=True
    )


def test_a_cut_link_costs_clean_errors_and_heals(
    lab: dict[str, ServeProcess], tiny_model: Path, record
) -> None:  # type: ignore[no-untyped-def]
    client, n2 = lab["c3"], lab["n2"]
    model = tiny_model.stem
    wait_until(lambda: client.served().get(model) == ["n1", "n2"], 120, "both replicas listed")
    load = Load(client.api, model, streams=4, max_tokens=120, headers=client.headers).start()
    time.sleep(3)
    cut_at = time.monotonic()
    link(n2, "down")
    try:
        wait_until(lambda: client.served().get(model) == ["n1"], 30, "the cut node's model gone")
        time.sleep(3)
    finally:
        link(n2, "up")
        down_s = time.monotonic() - cut_at
    healed_s = wait_until(
        lambda: client.served().get(model) == ["n1", "n2"], 120, "the cut node back"
    )
    time.sleep(2)
    outcomes = load.stop()
    verdict = judge(outcomes, cut_at, settled_after(outcomes, cut_at))
    record(f"link to a serving node cut for {down_s:.0f} s (failures settled after)", verdict)
    assert verdict.dirty == 0 and verdict.hung == 0
    print(f"the cut node was routed to again {healed_s:.1f} s after its link came back")
