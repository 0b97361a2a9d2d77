"""`mesh-llm serve` and ~/.mesh-llm/config.toml, as a user meets them: bare `serve` with
nothing configured explains itself and exits; configured models start with their context;
models on the command line win; a pinned GPU id that does not resolve stops `serve` before
anything starts."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest
from harness import local_serve, mesh_llm

from meshllm.core.ports import free_port

pytestmark = pytest.mark.e2e


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MESH_HOME": str(home)}
    return subprocess.run(mesh_llm(*args), env=env, capture_output=True, text=True, timeout=60)


def test_bare_serve_with_nothing_configured_shows_help_and_exits(tmp_path: Path) -> None:
    done = run(tmp_path, "serve", "--port", str(free_port()))
    assert done.returncode == 0
    assert "nothing to serve" in done.stderr and str(tmp_path / "config.toml") in done.stderr
    assert "usage: mesh-llm serve" in done.stdout and "--standby" in done.stdout


@pytest.mark.parametrize(
    ("text", "args", "message"),
    [
        (
            "version = 1\n[gpu]\nassignment = 'pinned'\n[[models]]\nmodel = 'm'\n"
            "gpu_id = 'uuid:GPU-not-here'\n",
            (),
            "no device here has gpu_id 'uuid:GPU-not-here'",
        ),
        (
            "version = 1\n[gpu]\nassignment = 'pinned'\n[[models]]\nmodel = 'm'\n"
            "gpu_id = 'index:0'\n",
            (),
            "is not a stable id",
        ),
        ("version = 3\n", (), "version must be 1"),
        (
            "version = 1\n[[plugin]]\nname = 'p'\ncommand = 'no-such-program'\n",
            ("--standby",),
            "plugin p: command 'no-such-program' is not an executable file",
        ),
        ("", ("--config", "/nonexistent/config.toml"), "--config /nonexistent/config.toml"),
    ],
)
def test_a_config_that_cannot_work_stops_serve_in_one_line(
    tmp_path: Path, text: str, args: tuple[str, ...], message: str
) -> None:
    (tmp_path / "config.toml").write_text(text)
    done = run(
        tmp_path, "serve", "--port", str(free_port()), "--state-dir", str(tmp_path / "s"), *args
    )
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("mesh-llm: error: ") and message in line
    assert not (tmp_path / "s").exists()  # nothing started


def replica_contexts(node: object) -> dict[str, int]:
    models = httpx.get(f"{node.api}/models", timeout=10).json()["data"]  # type: ignore[attr-defined]
    return {m["id"]: m["meshllm"]["replicas"][0]["context"] for m in models}


def test_configured_models_start_with_their_context_unless_the_command_line_names_others(
    tmp_path: Path, tiny_model: Path, chat_model: Path
) -> None:
    (tmp_path / "config.toml").write_text(
        f"version = 1\n[[models]]\nmodel = '{tiny_model}'\nctx_size = 1024\n"
    )
    node = local_serve(tmp_path / "a", env={"MESH_HOME": str(tmp_path)})
    try:
        node.wait_event("model_ready", timeout=120)
        assert replica_contexts(node) == {tiny_model.stem: 1024}
    finally:
        node.stop()
    # --gguf on the command line: the configured model is not started at all
    node = local_serve(tmp_path / "b", chat_model, env={"MESH_HOME": str(tmp_path)})
    try:
        node.wait_event("model_ready", timeout=120)
        assert list(replica_contexts(node)) == [chat_model.stem]
        assert any("are not started" in e.get("output", "") for e in node.events)
    finally:
        node.stop()


PLUGIN = """#!{python}
import json, os, pathlib, time, urllib.request
home = pathlib.Path(os.environ["MESH_LLM_PLUGIN_DIR"])
models = []
while not models:  # the node's model comes up after its plugins start
    with urllib.request.urlopen(os.environ["MESH_LLM_API"] + "/models", timeout=30) as reply:
        models = [m["id"] for m in json.load(reply)["data"]]
    time.sleep(0.2)
seen = {{k: v for k, v in os.environ.items() if k.startswith(("MESH_LLM_", "GREETING"))}}
(home / "seen.json").write_text(json.dumps({{"env": seen, "models": models, "pid": os.getpid()}}))
time.sleep(3600)
"""


def test_configured_plugins_run_beside_the_node_and_one_that_keeps_failing_is_left(
    tmp_path: Path, tiny_model: Path
) -> None:
    import json
    import sys
    import time

    plugin = tmp_path / "lister"
    plugin.write_text(PLUGIN.format(python=sys.executable))
    plugin.chmod(0o755)
    (tmp_path / "config.toml").write_text(
        f"version = 1\n[[models]]\nmodel = '{tiny_model}'\n"
        f"[[plugin]]\nname = 'lister'\ncommand = '{plugin}'\nenv = {{ GREETING = 'hello' }}\n"
        "[[plugin]]\nname = 'broken'\ncommand = 'false'\n"
        "[[plugin]]\nname = 'off'\ncommand = '/nonexistent'\nenabled = false\n"
    )
    node = local_serve(tmp_path / "state", env={"MESH_HOME": str(tmp_path)})
    seen_file = tmp_path / "state" / "plugins" / "lister" / "seen.json"
    try:
        node.wait_event("model_ready", timeout=120)
        given_up = node.wait_event("given_up", timeout=60)
        assert given_up["service"] == "plugin broken"
        deadline = time.monotonic() + 30
        while not seen_file.exists():
            assert time.monotonic() < deadline, "the plugin never reported"
            time.sleep(0.1)
        seen = json.loads(seen_file.read_text())
        assert seen["env"]["MESH_LLM_API"] == node.api
        assert seen["env"]["GREETING"] == "hello" and seen["env"]["MESH_LLM_PLUGIN"] == "lister"
        assert seen["models"] == [tiny_model.stem]  # it reached the node's API
        # the node goes on serving without the broken plugin
        reply = httpx.post(
            f"{node.api}/completions",
            json={"model": tiny_model.stem, "prompt": "hi", "max_tokens": 2},
            timeout=60,
        )
        assert reply.status_code == 200
    finally:
        node.stop()
    with pytest.raises(ProcessLookupError):  # stopped with the node
        os.kill(seen["pid"], 0)
