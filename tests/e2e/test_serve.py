"""`mesh-llm serve` end to end, as a user runs it: a real etcd, registry, scheduler, worker
(real llama-server) and gateway, each its own process; the official `openai` client."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from harness import ServeProcess, local_serve, mesh_llm
from helpers import descendants, pid_alive, start_time

from meshllm.core.ports import free_port

pytestmark = pytest.mark.e2e
TTL_S = 3  # the services' default lease TTL


@pytest.fixture(scope="module")
def serve(
    chat_model: Path, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeProcess]:
    running = local_serve(tmp_path_factory.mktemp("serve"), chat_model, tiny_model)
    try:
        running.wait_event("model_ready", count=2)
        yield running
    finally:
        running.stop()


def test_models_lists_both(serve: ServeProcess, chat_model: Path, tiny_model: Path) -> None:
    models = serve.client().models.list()
    ids = sorted(m.id for m in models.data)
    assert ids == sorted([chat_model.stem, tiny_model.stem])
    assert all(m.owned_by == "mesh-llm" for m in models.data)


def test_chat(serve: ServeProcess, chat_model: Path) -> None:
    reply = serve.client().chat.completions.create(
        model=chat_model.stem,
        temperature=0,
        max_tokens=24,
        messages=[{"role": "user", "content": "What is 2+2?"}],
    )
    assert "4" in reply.choices[0].message.content
    assert reply.usage is not None and reply.usage.completion_tokens > 0


def test_chat_streaming(serve: ServeProcess, chat_model: Path) -> None:
    stream = serve.client().chat.completions.create(
        model=chat_model.stem,
        temperature=0,
        max_tokens=24,
        stream=True,
        messages=[{"role": "user", "content": "What is 2+2?"}],
    )
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len(pieces) > 3 and "4" in "".join(pieces)


def test_completions_and_embeddings(
    serve: ServeProcess, chat_model: Path, tiny_model: Path
) -> None:
    client = serve.client()
    done = client.completions.create(model=tiny_model.stem, prompt="Hello", max_tokens=8)
    assert done.choices[0].text
    vectors = client.embeddings.create(model=chat_model.stem, input=["hello", "world"])
    assert len(vectors.data) == 2 and len(vectors.data[0].embedding) == 576


def test_responses_and_messages_with_the_official_clients(
    serve: ServeProcess, chat_model: Path
) -> None:
    """OpenAI's Responses API and Anthropic's Messages API, routed by model like the others."""
    import anthropic

    reply = serve.client().responses.create(
        model="smollm2", input="What is 2+2?", max_output_tokens=16, temperature=0
    )
    assert "4" in reply.output_text
    claude = anthropic.Anthropic(
        base_url=serve.api.removesuffix("/v1"), api_key="unused", max_retries=0, timeout=60
    )
    message = claude.messages.create(
        model=chat_model.stem,
        max_tokens=16,
        messages=[{"role": "user", "content": "What is 2+2?"}],
        extra_body={"temperature": 0},
    )
    assert message.role == "assistant" and "4" in message.content[0].text
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.create(
            model="no-such-model", max_tokens=4, messages=[{"role": "user", "content": "hi"}]
        )


def test_greedy_output_equals_llama_server_direct(serve: ServeProcess, chat_model: Path) -> None:
    body = {
        "model": chat_model.stem,
        "temperature": 0,
        "max_tokens": 48,
        "seed": 1,
        "messages": [{"role": "user", "content": "Name three colours."}],
    }
    direct = httpx.post(
        f"http://127.0.0.1:{serve.llama_port(chat_model.stem)}/v1/chat/completions",
        json=body,
        timeout=60,
    ).json()
    through = httpx.post(f"{serve.api}/chat/completions", json=body, timeout=60).json()
    assert through["choices"][0]["message"]["content"] == direct["choices"][0]["message"]["content"]
    assert through["usage"]["completion_tokens"] == direct["usage"]["completion_tokens"]
    prompt = {"model": chat_model.stem, "prompt": "The sea is", "max_tokens": 32, "temperature": 0}
    direct_text = httpx.post(
        f"http://127.0.0.1:{serve.llama_port(chat_model.stem)}/v1/completions",
        json=prompt,
        timeout=60,
    ).json()
    through_text = httpx.post(f"{serve.api}/completions", json=prompt, timeout=60).json()
    assert through_text["choices"][0]["text"] == direct_text["choices"][0]["text"]


def test_bad_input_gets_clear_errors_and_the_stack_keeps_serving(
    serve: ServeProcess, chat_model: Path
) -> None:
    client = serve.client()
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="gpt-17", messages=[{"role": "user", "content": "hi"}])
    assert chat_model.stem in str(unknown.value)
    with pytest.raises(openai.BadRequestError, match="messages"):
        client.chat.completions.create(model=chat_model.stem, messages=[])
    malformed = httpx.post(
        f"{serve.api}/chat/completions",
        content=b"{oops",
        headers={"content-type": "application/json"},
    )
    assert malformed.status_code == 400 and "not valid JSON" in malformed.json()["error"]["message"]
    reply = client.chat.completions.create(
        model=chat_model.stem, max_tokens=4, messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.choices[0].message.content is not None


def test_console_and_metrics(serve: ServeProcess, chat_model: Path) -> None:
    serve.client().chat.completions.create(
        model=chat_model.stem, messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )  # this test's own request, for the counter below
    status = serve.status()
    assert [m["id"] for m in status["models"]] == sorted(m["id"] for m in status["models"])
    assert all(m["state"] == "serving" and not m["next"] for m in status["models"])
    page = httpx.get(f"{serve.console}/")
    assert page.status_code == 200 and "Mesh LLM" in page.text
    metrics = httpx.get(f"{serve.api.removesuffix('/v1')}/metrics").text
    assert f'meshllm_requests_total{{model="{chat_model.stem}"' in metrics


def test_status_finds_the_node_and_lists_its_models(
    serve: ServeProcess, chat_model: Path, tiny_model: Path
) -> None:
    """`mesh-llm status` finds the console of the node running here by its run file."""
    import subprocess

    shown = subprocess.run(mesh_llm("status"), capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    rows = {line.split()[0]: line.split()[1:3] for line in shown.stdout.splitlines() if line}
    assert rows[chat_model.stem] == rows[tiny_model.stem] == ["serving", "1"], shown.stdout
    one = subprocess.run(mesh_llm("status", "nothing-like-it"), capture_output=True, text=True)
    assert one.returncode == 1 and one.stdout == ""
    assert one.stderr.count("\n") == 1 and "knows no model 'nothing-like-it'" in one.stderr


def test_the_node_mints_invites_and_lists_members(serve: ServeProcess) -> None:
    import json
    import subprocess

    from meshllm.core.invite import decode_token

    ready = serve.wait_event("ready")
    run = lambda *args: subprocess.run(  # noqa: E731
        mesh_llm(*args), capture_output=True, text=True, timeout=60
    )
    minted = run("invite", "--json", "--client", "--ttl", "1h", "--uses", "1")
    assert minted.returncode == 0, minted.stderr
    token = decode_token(json.loads(minted.stdout)["token"])
    assert (token.mesh_id, token.role) == (ready["mesh"], "client")
    assert 3500 < token.expires - time.time() <= 3600
    members = json.loads(run("members", "--json").stdout)
    assert [m["node"] for m in members] == [ready["node"]]
    assert "cannot be revoked" not in run("revoke", ready["node"] + "-x").stderr


def test_killed_worker_leaves_within_the_ttl_and_comes_back(
    serve: ServeProcess, chat_model: Path
) -> None:
    worker = serve.pid_of("worker")
    llama_servers = {
        p: start_time(p) for p, cmd in descendants(worker).items() if "llama-server" in cmd
    }
    assert len(llama_servers) == 2
    os.kill(worker, signal.SIGKILL)
    killed_at = time.monotonic()
    while serve.served():
        assert time.monotonic() - killed_at < TTL_S + 2, "endpoints outlived the lease TTL"
        time.sleep(0.1)
    gone_after = time.monotonic() - killed_at
    assert gone_after <= TTL_S + 2
    deadline = time.monotonic() + 5
    while any(pid_alive(p, started) for p, started in llama_servers.items()):
        # SIGKILLed with their worker: nothing of theirs is worth finishing
        assert time.monotonic() < deadline, "llama-server outlived its worker"
        time.sleep(0.1)
    deadline = time.monotonic() + 60
    while chat_model.stem not in serve.served():  # serve restarts the worker; it re-registers
        assert time.monotonic() < deadline, "the model did not come back"
        time.sleep(0.2)
    reply = serve.client().chat.completions.create(
        model=chat_model.stem, max_tokens=4, messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.choices[0].message.content is not None
    assert any(e.get("event") == "restart" and e.get("service") == "worker" for e in serve.events)


def test_store_loss_is_survived_said_and_repaired(serve: ServeProcess, chat_model: Path) -> None:
    def chat() -> httpx.Response:
        body = {
            "model": chat_model.stem,
            "max_tokens": 2,
            "messages": [{"role": "user", "content": "hi"}],
        }
        return httpx.post(f"{serve.api}/chat/completions", json=body, timeout=60)

    def etcd_events(kind: str) -> list[dict]:
        return [e for e in serve.events if e.get("event") == kind and e.get("service") == "etcd"]

    exits, restarts = len(etcd_events("restart")), len(etcd_events("restarted"))
    killed = serve.pid_of("etcd")
    os.kill(killed, signal.SIGKILL)
    assert chat().status_code == 200  # gateways route from what they already know
    said = wait_for(lambda: etcd_events("restart")[exits:])
    assert "store (etcd) exited" in said[0]["message"] and said[0]["code"] == -signal.SIGKILL
    wait_for(lambda: etcd_events("restarted")[restarts:])  # back, and healthy
    etcd = serve.pid_of("etcd")
    assert etcd != killed

    # a gateway that starts while the store is away answers; once the store is back it
    # routes again, from what the restarted store kept
    os.kill(etcd, signal.SIGSTOP)
    try:
        os.kill(serve.pid_of("gateway"), signal.SIGKILL)
        reply = wait_for(lambda: answered(chat), timeout=60)  # a Python start on 2 busy cores
        assert reply.status_code == 503
        assert reply.json()["error"]["code"] == "store_unavailable" and reply.headers["retry-after"]
    finally:
        os.kill(etcd, signal.SIGCONT)
    wait_for(lambda: chat().status_code == 200, timeout=60)


def answered(request: Callable[[], httpx.Response]) -> httpx.Response | None:
    try:
        return request()
    except httpx.TransportError:
        return None


def wait_for(check: Callable[[], object], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except httpx.TransportError:
            result = None
        if result:
            return result
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


def test_sigterm_stops_every_child(serve: ServeProcess) -> None:
    children = descendants(serve.pid)
    assert any("llama-server" in c for c in children.values())
    assert any("etcd" in c for c in children.values())
    serve.process.send_signal(signal.SIGTERM)
    assert serve.process.wait(60) == 0
    time.sleep(0.5)
    left = [f"{p}: {c}" for p, c in children.items() if pid_alive(p)]
    assert left == [], f"left behind: {left}"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{serve.api}/models")


def test_api_keys_from_a_file(tmp_path: Path, tiny_model: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("sk-first\nsk-second\n")
    running = local_serve(tmp_path / "state", tiny_model, extra=("--api-keys-file", str(keys)))
    try:
        running.wait_event("model_ready")
        body = {"model": tiny_model.stem, "prompt": "hi", "max_tokens": 2}
        refused = httpx.post(f"{running.api}/completions", json=body, timeout=30)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
        client = openai.OpenAI(base_url=running.api, api_key="sk-second", max_retries=0)
        assert client.completions.create(**body).choices  # type: ignore[call-overload]
    finally:
        running.stop()


def test_a_run_without_a_state_dir_leaves_only_its_logs(tmp_path: Path, tiny_model: Path) -> None:
    port = free_port()
    argv = ["env", f"TMPDIR={tmp_path}", *mesh_llm("serve", "--gguf", str(tiny_model))]
    argv += ["--port", str(port), "--console-port", "0", "--json"]
    running = ServeProcess(
        "serve",
        argv,
        api=f"http://127.0.0.1:{port}/v1",
    ).start()
    try:
        running.wait_event("model_ready")
        [state] = list(tmp_path.glob("mesh-llm-*"))
        assert {"etcd", "credentials", "logs"} <= {p.name for p in state.iterdir()}
    finally:
        running.stop()
    assert [p.name for p in state.iterdir()] == ["logs"]
    assert (state / "logs" / "worker.log").stat().st_size > 0
