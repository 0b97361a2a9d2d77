"""Many boxes, one mesh, for real: each node in its own network namespace with its own
address, running its own services, joined by invite token; an API-only client in a fourth.
A node is killed (SIGKILL of everything in its namespace) and comes back. From a fifth
namespace with no credentials, nothing but the API answers; a client's certificate cannot
publish, a forged endpoint is never routed to, an expired invite or a revoked node gets
nothing."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
from harness import (
    LAB_API_PORT,
    LAB_CONSOLE_PORT,
    ServeProcess,
    lab_mesh,
    lab_node,
    mesh_llm,
    wait_for,
)
from netns import Host, Lab

from meshllm.core import keys, pki
from meshllm.core.invite import decode_token
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.store import EtcdStore

pytestmark = [pytest.mark.e2e, pytest.mark.netns]
TTL_S = 3
MESH_NAME = "lab-mesh"


@dataclass
class Mesh:
    lab: Lab
    nodes: dict[str, ServeProcess]
    token: str
    state: Path

    def credentials(self, name: str) -> pki.Credentials:
        return pki.Credentials(self.state / name / "credentials")

    def store(self, name: str):  # type: ignore[no-untyped-def]
        token = decode_token(self.token)
        return EtcdStore.connect(token.etcd, credentials=self.credentials(name), wait_s=5)


@pytest.fixture(scope="module")
def mesh(
    chat_model: Path, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Mesh]:
    with lab_mesh(tmp_path_factory, "mesh", 5, "the multi-host suite") as (lab, nodes, state):
        h1, h2, h3, h4, _ = lab.hosts
        first = lab_node(
            h1, "n1", state, "serve", "--gguf", str(chat_model), "--mesh-name", MESH_NAME
        )
        first.start()
        ready = first.wait_event("ready")
        token = ready["token"]
        nodes["n1"] = first
        joins = {
            "n2": (h2, ["serve", "--join", token, "--gguf", str(chat_model)]),
            "n3": (h3, ["serve", "--join", token, "--gguf", str(tiny_model)]),
            "c4": (h4, ["client", "--join", ready["client_token"]]),
        }
        for name, (host, args) in joins.items():
            nodes[name] = lab_node(host, name, state, *args)
            nodes[name].start()
        for node in nodes.values():
            node.wait_event("ready")
        yield Mesh(lab, nodes, token, state)


def test_every_gateway_sees_every_model_with_where_it_runs(
    mesh: Mesh, chat_model: Path, tiny_model: Path
) -> None:
    expected = {chat_model.stem: ["n1", "n2"], tiny_model.stem: ["n3"]}
    for node in mesh.nodes.values():
        wait_for(lambda node=node: node.served() == expected)


def test_the_console_shows_every_node_with_its_round_trip(own_browser, mesh: Mesh) -> None:  # type: ignore[no-untyped-def]
    """A real browser on n1's console (on its host's address: the page asks for the key):
    every node of the mesh, the client included, with the round trip from n1 on its edge."""
    n1 = mesh.nodes["n1"]

    def nodes() -> list[dict]:
        return httpx.get(n1.console + "/api/status", headers=n1.headers).json()["nodes"]

    wait_for(lambda: len(nodes()) == 4)
    wait_for(lambda: all(n["rtt_ms"] is not None for n in nodes() if n["id"] in ("n2", "n3")))
    page = own_browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(n1.console)
    page.wait_for_selector("#keybar:not([hidden])", timeout=20000)
    page.fill("#key", n1.api_key)
    page.click("#usekey")
    page.wait_for_function(
        "document.querySelectorAll('#topology g[data-node]').length === 4", timeout=30000
    )
    assert page.locator("#topology .rtt:has-text(' ms')").count() >= 2  # n1 → n2, n3
    assert "client" in page.inner_text("#nodes")
    if os.environ.get("MESH_CONSOLE_SCREENSHOTS"):
        shots = Path(__file__).resolve().parents[2] / "docs" / "console"
        page.screenshot(path=str(shots / "mesh.png"), full_page=True)
    page.close()


def test_the_client_node_routes_to_serving_nodes(
    mesh: Mesh, chat_model: Path, tiny_model: Path
) -> None:
    client = mesh.nodes["c4"].client()
    answered_by: Counter[str] = Counter()
    for i in range(12):  # twelve conversations: session affinity spreads them over replicas
        raw = client.chat.completions.with_raw_response.create(
            model=chat_model.stem,
            max_tokens=8,
            temperature=0,
            messages=[{"role": "user", "content": f"What is {i}+{i}?"}],
        )
        answered_by[raw.headers["x-mesh-node"]] += 1
        assert raw.parse().choices[0].message.content
    assert set(answered_by) == {"n1", "n2"}, answered_by
    tiny = client.completions.with_raw_response.create(
        model=tiny_model.stem, prompt="hi", max_tokens=4
    )
    assert tiny.headers["x-mesh-node"] == "n3"
    stream = client.chat.completions.create(
        model=chat_model.stem,
        max_tokens=8,
        stream=True,
        messages=[{"role": "user", "content": "hi"}],
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def test_a_serving_node_forwards_models_it_does_not_hold(mesh: Mesh, tiny_model: Path) -> None:
    raw = (
        mesh.nodes["n1"]
        .client()
        .completions.with_raw_response.create(model=tiny_model.stem, prompt="hi", max_tokens=4)
    )
    assert raw.headers["x-mesh-node"] == "n3"


def run_on(host: Host, argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(host.command(argv), capture_output=True, text=True, timeout=120)


def listening_ports(host: Host) -> set[int]:
    done = subprocess.run(host.command(["ss", "-ltnH"]), capture_output=True, text=True)
    return {int(line.split()[3].rsplit(":", 1)[1]) for line in done.stdout.splitlines()}


def test_a_stranger_reaches_only_the_api(mesh: Mesh) -> None:
    """From a namespace with no credentials, every port of the founding node: the API and
    the console answer (their data only with a key); the authority's door answers TLS (its
    CA is public, the rest needs an invite or a node's certificate); everything else refuses
    or is on loopback."""
    first, stranger = mesh.nodes["n1"].host, mesh.lab.hosts[4]
    ports = sorted(listening_ports(first))
    authority = int(decode_token(mesh.token).authority.rsplit(":", 1)[1])
    done = subprocess.run(
        stranger.command(
            [sys.executable, str(Path(__file__).parent.parent / "probe_ports.py"), first.address]
            + [str(p) for p in ports]
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    seen = {int(port): answer for port, answer in json.loads(done.stdout).items()}
    assert seen.pop(LAB_API_PORT) == "http"
    assert seen.pop(LAB_CONSOLE_PORT) == "http"  # its page; its /api/ wants the API's key
    status = httpx.get(f"{mesh.nodes['n1'].console}/api/status", timeout=10)
    assert status.status_code == 401
    assert seen.pop(authority) == "tls-open"
    assert seen and all(answer in ("closed", "tls-refused") for answer in seen.values()), seen
    assert "tls-refused" in seen.values()  # etcd, gRPC and the relay are there, behind TLS


async def test_relays_stream_only_to_members(mesh: Mesh) -> None:
    async with mesh.store("n3") as store:
        workers, _ = await store.get_prefix(
            keys.workers(decode_token(mesh.token).mesh_id), pb.WorkerRecord
        )
    assert sorted(w.node for w in workers.values()) == ["n1", "n2", "n3"]
    body = {"model": "x", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    member = mesh.credentials("c4").client_context(check_name=False)
    async with httpx.AsyncClient(timeout=10, verify=member) as http:
        for worker in workers.values():
            assert worker.relay_url.startswith(f"https://{mesh.lab.subnet}.")
            url = f"{worker.relay_url}/relay/{worker.instances[0].id}/v1/chat/completions"
            assert (await http.post(url, json=body)).status_code == 200
            with pytest.raises(httpx.HTTPError):
                await httpx.AsyncClient(verify=False).post(url, json=body)


async def test_an_api_client_cannot_publish(mesh: Mesh) -> None:
    mesh_id = decode_token(mesh.token).mesh_id
    async with mesh.store("c4") as store:
        await store.get_prefix(keys.endpoints(mesh_id), pb.Endpoint)  # it may read
        for key, value in [
            (keys.worker(mesh_id, "c4", "gpu0"), pb.WorkerRecord(node="c4")),
            (keys.endpoint(mesh_id, "m", "forged"), pb.Endpoint(model="m")),
            (keys.assignment(mesh_id, "n1", "cpu0", "a"), pb.Assignment()),
        ]:
            with pytest.raises(Exception, match="permission denied"):
                await store.put(key, value)


async def test_a_forged_endpoint_is_never_routed_to(mesh: Mesh, chat_model: Path) -> None:
    """A member writes an endpoint with valid-looking data that points elsewhere (a listener
    of the test's own): no gateway sends it a single request."""
    listener = socket.create_server((f"{mesh.lab.subnet}.254", 0))
    listener.settimeout(0.1)
    port = listener.getsockname()[1]
    mesh_id = decode_token(mesh.token).mesh_id
    async with mesh.store("n3") as store:
        workers, _ = await store.get_prefix(keys.workers(mesh_id, "n3"), pb.WorkerRecord)
        worker = next(iter(workers.values()))
        forged = pb.Endpoint(
            model=chat_model.stem,
            instance_id="forged",
            node="n3",
            worker_id=worker.worker_id,
            local_url="http://127.0.0.1:1",
            relay_url=f"https://{mesh.lab.subnet}.254:{port}",
            slots=64,
        )
        key = keys.endpoint(mesh_id, chat_model.stem, "forged")
        await store.put(key, forged)
        try:
            client = mesh.nodes["c4"].client()
            for _ in range(8):
                client.chat.completions.create(
                    model=chat_model.stem,
                    max_tokens=2,
                    messages=[{"role": "user", "content": "hi"}],
                )
            with pytest.raises(TimeoutError):
                listener.accept()
        finally:
            await store.delete(key)
            listener.close()


def test_an_expired_invite_cannot_join(mesh: Mesh, tmp_path: Path) -> None:
    creds = ["--credentials", str(mesh.state / "n1" / "credentials")]
    minted = run_on(mesh.nodes["n1"].host, mesh_llm("invite", "--ttl", "1s", "--json", *creds))
    assert minted.returncode == 0, minted.stderr
    time.sleep(1.5)
    stranger = mesh.lab.hosts[4]
    token = json.loads(minted.stdout)["token"]
    done = run_on(stranger, lab_node(stranger, "late", tmp_path, "client", "--join", token).argv)
    assert done.returncode == 1
    assert "expired" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_killed_node_leaves_and_comes_back(mesh: Mesh, chat_model: Path, tiny_model: Path) -> None:
    n2, client_node = mesh.nodes["n2"], mesh.nodes["c4"]
    n2.host.kill_all()
    killed = time.monotonic()
    wait_for(
        lambda: client_node.served().get(chat_model.stem) == ["n1"], timeout=TTL_S + 3, every=0.1
    )
    left_after = time.monotonic() - killed
    assert left_after <= TTL_S + 3
    for node in (mesh.nodes["n1"], mesh.nodes["n3"], client_node):
        assert node.served().get(chat_model.stem) == ["n1"]
    client = client_node.client()
    for _ in range(4):  # the replicated model keeps answering
        raw = client.chat.completions.with_raw_response.create(
            model=chat_model.stem, max_tokens=4, messages=[{"role": "user", "content": "hi"}]
        )
        assert raw.headers["x-mesh-node"] == "n1"
    n2.start()  # the same command: no manual step to rejoin
    n2.wait_event("ready")
    wait_for(lambda: client_node.served().get(chat_model.stem) == ["n1", "n2"])

    conversations = iter(range(10_000))

    def routed_to_n2() -> bool:  # a new conversation each time: some hash to n2
        raw = client.chat.completions.with_raw_response.create(
            model=chat_model.stem,
            max_tokens=4,
            messages=[{"role": "user", "content": f"hi {next(conversations)}"}],
        )
        return raw.headers["x-mesh-node"] == "n2"

    wait_for(routed_to_n2, timeout=30, every=0)


def test_discover_finds_the_published_mesh_from_another_host(mesh: Mesh) -> None:
    searcher = mesh.lab.hosts[3]
    done = subprocess.run(
        searcher.command(
            mesh_llm("discover", "--interface", searcher.address, "--timeout", "4", "--json")
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    found = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    ours = [m for m in found if m["name"] == MESH_NAME]
    assert len(ours) == 1, found
    assert ours[0]["models"] == 2 and ours[0]["nodes"] >= 3
    assert ours[0]["token"] == mesh.token


def test_client_auto_joins_the_mesh_it_finds(mesh: Mesh, chat_model: Path, tmp_path: Path) -> None:
    host = mesh.lab.hosts[4]
    node = lab_node(host, "c5", tmp_path, "client", "--auto")
    node.start()
    try:
        joined = node.wait_event("joining", timeout=60)
        assert joined["mesh"] == decode_token(mesh.token).mesh_id
        node.wait_event("ready")
        wait_for(lambda: chat_model.stem in node.served())
    finally:
        assert node.process is not None
        node.process.terminate()
        node.process.wait(30)


def test_a_revoked_node_is_cut_off_everywhere(mesh: Mesh, chat_model: Path) -> None:
    """Last: it removes c4 from the mesh."""
    client = mesh.nodes["c4"].client()
    client.chat.completions.create(
        model=chat_model.stem, max_tokens=2, messages=[{"role": "user", "content": "hi"}]
    )
    creds = ["--credentials", str(mesh.state / "n1" / "credentials")]
    done = run_on(mesh.nodes["n1"].host, mesh_llm("revoke", "c4", *creds))
    assert done.returncode == 0, done.stderr
    with pytest.raises(openai.APIStatusError):  # every relay refuses its certificate now
        client.chat.completions.create(
            model=chat_model.stem, max_tokens=2, messages=[{"role": "user", "content": "hi"}]
        )
    listed = run_on(mesh.nodes["n1"].host, mesh_llm("members", "--json", *creds))
    members = {m["node"] for m in json.loads(listed.stdout)}
    assert "c4" not in members and {"n1", "n2", "n3"} <= members
