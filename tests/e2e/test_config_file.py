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

from meshllm.cli.etcd import free_port

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
