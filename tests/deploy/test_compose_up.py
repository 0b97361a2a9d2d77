"""`docker compose up` for real: the CPU image built from deploy/Dockerfile, the stack of
deploy/docker-compose.yml brought up on a generated model (podman and podman-compose where no
Docker engine runs), the `openai` client on the published API port, a second box joining with
an invite token through deploy/docker-compose.join.yml (its enrol container getting the box's
certificate from the first box's authority), the worker container killed and
started again, and `down` leaving nothing behind."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from compose import ComposeProject, build_image, container_engine_problem, wait_until
from helpers import cannot_run_here

from meshllm.cli.network import lan_address
from meshllm.core.ports import free_port
from meshllm.core.process import process_table

# a cold image build (llama.cpp compiled inside) takes ~13 min on 2 cores; it runs in the
# first test's setup
pytestmark = [pytest.mark.deploy, pytest.mark.containers, pytest.mark.timeout(2400)]
LEASE_TTL_S = 3


@pytest.fixture(scope="session")
def image() -> str:
    problem = container_engine_problem()
    if problem:
        cannot_run_here(f"container tests need podman or Docker: {problem}")
    return build_image("cpu")


def models_dir(root: Path, source: Path, name: str) -> Path:
    """A folder the non-root user inside the containers can read."""
    shutil.copy(source, root / f"{name}.gguf")
    root.chmod(0o755)
    (root / f"{name}.gguf").chmod(0o644)
    return root


def served(port: int) -> dict[str, list[str]]:
    """Model id -> the nodes serving it, as a gateway lists them."""
    reply = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5)
    return {
        m["id"]: sorted(r["node"] for r in m["meshllm"]["replicas"]) for m in reply.json()["data"]
    }


def chat(port: int, model: str, stream: bool = False) -> int:
    """Chunks (streamed) or choices answered by the gateway at `port`."""
    client = openai.OpenAI(
        base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=60
    )
    messages = [{"role": "user", "content": "hi"}]
    if stream:
        chunks = client.chat.completions.create(
            model=model,
            max_tokens=8,
            stream=True,
            messages=messages,  # type: ignore[arg-type]
        )
        return len([c for c in chunks if c.choices and c.choices[0].delta.content])
    reply = client.chat.completions.create(model=model, max_tokens=8, messages=messages)  # type: ignore[arg-type]
    assert reply.choices[0].message.content
    return len(reply.choices)


class Box:
    def __init__(self, project: ComposeProject, port: int) -> None:
        self.project = project
        self.port = port

    def served(self) -> dict[str, list[str]]:
        return served(self.port)


@pytest.fixture(scope="module")
def host() -> str:
    """The address boxes reach each other at: this machine's, as on a real LAN."""
    return lan_address()


@pytest.fixture(scope="module")
def box1(
    image: str, tiny_model: Path, host: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Box]:
    root = tmp_path_factory.mktemp("box1-models")
    port = free_port()
    project = ComposeProject(
        ["docker-compose.yml"],
        {
            "MESH_IMAGE": image,
            "MESH_MESH_ID": f"compose-{uuid.uuid4().hex[:6]}",
            "MESH_MODEL": "/models/tiny.gguf",
            "MESH_MODELS_DIR": str(models_dir(root, tiny_model, "tiny")),
            "MESH_PORT": str(port),
            "MESH_CONSOLE_PORT": str(free_port()),
            "MESH_RELAY_PORT": str(free_port()),
            "MESH_ETCD_PORT": str(free_port()),
            "MESH_AUTHORITY_PORT": str(free_port()),
            "MESH_WORKER_HOST": host,
        },
    )
    box = Box(project, port)
    try:
        project.up()
        wait_until(lambda: box.served() == {"tiny": ["box1"]}, 240, "tiny served on box1")
        yield box
    except Exception:
        print(project.logs())
        raise
    finally:
        project.down()


def test_models_and_chat_through_the_published_port(box1: Box) -> None:
    client = openai.OpenAI(
        base_url=f"http://127.0.0.1:{box1.port}/v1", api_key="x", max_retries=0, timeout=60
    )
    assert [m.id for m in client.models.list().data] == ["tiny"]
    assert chat(box1.port, "tiny") == 1
    assert chat(box1.port, "tiny", stream=True) > 1


def test_every_container_passes_its_healthcheck(box1: Box) -> None:
    services = ["authority", "etcd", "registry", "scheduler", "worker", "gateway"]
    for service in services:
        name = box1.project.container(service)
        if box1.project.engine == "podman":
            check = box1.project.container_cmd("healthcheck", "run", name)
            assert check.returncode == 0, f"{service}: {check.stdout}{check.stderr}"
        else:
            state = box1.project.container_cmd(
                "inspect", "--format", "{{.State.Health.Status}}", name
            )
            assert state.stdout.strip() == "healthy", service


def test_a_second_box_joins_with_the_token(
    box1: Box, tiny_model: Path, host: str, image: str, tmp_path: Path
) -> None:
    gateway = box1.project.container("gateway")
    invite = box1.project.container_cmd(
        "exec", gateway, "mesh-llm", "invite", "--credentials", "/credentials/node", "--uses", "1"
    )
    assert invite.returncode == 0, invite.stderr
    token = invite.stdout.strip()
    port = free_port()
    box2 = Box(
        ComposeProject(
            ["docker-compose.join.yml"],
            {
                "MESH_IMAGE": image,
                "MESH_JOIN": token,
                "MESH_NODE": "box2",
                "MESH_WORKER_HOST": host,
                "MESH_MODEL": "/models/other.gguf",
                "MESH_MODELS_DIR": str(models_dir(tmp_path, tiny_model, "other")),
                "MESH_PORT": str(port),
                "MESH_CONSOLE_PORT": str(free_port()),
                "MESH_RELAY_PORT": str(free_port()),
            },
        ),
        port,
    )
    whole_mesh = {"tiny": ["box1"], "other": ["box2"]}
    try:
        box2.project.up()
        wait_until(lambda: box1.served() == whole_mesh, 240, "box2's model listed on box1")
        # box1's gateway sends `other` to box2's worker, and box2's sends `tiny` to box1's
        assert chat(box1.port, "other", stream=True) > 1
        wait_until(lambda: box2.served() == whole_mesh, 60, "the whole mesh listed on box2")
        assert chat(box2.port, "tiny") == 1
    except Exception:
        print(box2.project.logs())
        raise
    finally:
        down = box2.project.down()
    assert down.returncode == 0, down.stderr
    wait_until(lambda: box1.served() == {"tiny": ["box1"]}, LEASE_TTL_S + 10, "box2 gone")


def test_killed_worker_leaves_and_comes_back(box1: Box) -> None:
    worker = box1.project.container("worker")
    killed = box1.project.container_cmd("kill", worker)
    assert killed.returncode == 0, killed.stderr
    wait_until(lambda: box1.served() == {}, LEASE_TTL_S + 5, "the killed worker's model gone")
    started = box1.project.container_cmd("start", worker)
    assert started.returncode == 0, started.stderr
    wait_until(lambda: box1.served() == {"tiny": ["box1"]}, 120, "the restarted worker back")
    assert chat(box1.port, "tiny") == 1


def processes_mentioning(words: list[str]) -> list[str]:
    """Command lines on this host naming any of `words` (container monitors and runtimes name
    the container id)."""
    commands = (p.command for p in process_table().values())
    return [c for c in commands if any(word in c for word in words)]


def test_down_leaves_nothing_behind(box1: Box) -> None:
    ids = box1.project.container_ids()
    assert ids and processes_mentioning(ids)  # each running container has its monitor
    down = box1.project.down()
    assert down.returncode == 0, down.stderr
    assert box1.project.containers() == []
    assert box1.project.networks() == []
    assert processes_mentioning(ids) == []
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{box1.port}/v1/models", timeout=2)
