"""`mesh-llm goose|claude|opencode` against a real mesh serving the built-in chat model: the
configuration each harness would get points at that mesh, `--join` brings up an API-only node
for as long as the command runs (a stand-in script checks what a harness is given, its exit
status and SIGTERM), and the harnesses published on npm (opencode, Claude Code) really run once
through the mesh, non-interactively. goose is not on npm: only its configuration is checked.

The npm packages are installed, at pinned versions, under ~/.cache/mesh-llm/npm (or
$MESH_TEST_NPM_CACHE) and reused from there; each harness runs with a fresh HOME, so nothing
of the user's own configuration takes part and nothing is left in it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from harness import ServeProcess, local_serve, mesh_llm
from helpers import cannot_run_here

from meshllm.core.ports import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
HARNESS_TIMEOUT_S = 180  # a tiny model may ramble to its output limit, and harnesses retry


@dataclass(frozen=True)
class NpmHarness:
    package: str
    version: str
    binary: str
    args: tuple[str, ...]  # a non-interactive run of one prompt
    route: str  # the API route it uses

    @property
    def folder(self) -> str:
        # no '@' in it: npm 11 installs nothing into a prefix named like `package@version`
        return f"{self.package.lstrip('@').replace('/', '-')}-{self.version}"


NPM_HARNESSES = {
    "opencode": NpmHarness(
        "opencode-ai", "1.18.33", "opencode", ("run", "say hi"), "/v1/chat/completions"
    ),
    "claude": NpmHarness(
        "@anthropic-ai/claude-code",
        "2.1.332",
        "claude",
        ("-p", "say hi", "--max-turns", "1"),
        "/v1/messages",
    ),
}


@pytest.fixture(scope="module")
def mesh(chat_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    # Claude Code's prompt alone is about 4,000 tokens: the model's whole trained context
    running = local_serve(
        tmp_path_factory.mktemp("launch"), chat_model, threads=2, parallel=1, context=8192
    )
    try:
        running.wait_event("model_ready")
        yield running
    finally:
        running.stop()


def base_url(mesh: ServeProcess) -> str:
    return mesh.api.removesuffix("/v1")


def port_of(mesh: ServeProcess) -> str:
    return mesh.api.removesuffix("/v1").rsplit(":", 1)[1]


def mesh_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "MESH_HOME": str(tmp_path / "mesh-home"), **extra}


def print_config(tmp_path: Path, harness: str, *args: str) -> dict:
    done = subprocess.run(
        mesh_llm(harness, "--print-config", "--json", *args),
        capture_output=True,
        text=True,
        timeout=240,
        env=mesh_env(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    config: dict = json.loads(done.stdout)
    return config


def test_each_harness_is_pointed_at_the_mesh(
    mesh: ServeProcess, chat_model: Path, tmp_path: Path
) -> None:
    base, model = base_url(mesh), chat_model.stem
    for harness in ("goose", "claude", "opencode"):
        config = print_config(tmp_path, harness, "--port", port_of(mesh))
        assert config["api"] == mesh.api and config["model"] == model
        assert "tool calls" in config["reason"]  # SmolLM2-135M is not a tool-use model
        env = config["env"]
        if harness == "goose":
            assert (env["OPENAI_HOST"], env["GOOSE_MODEL"]) == (base, model)
            assert env["GOOSE_CONTEXT_LIMIT"] == "8192"
        elif harness == "claude":
            assert (env["ANTHROPIC_BASE_URL"], env["ANTHROPIC_MODEL"]) == (base, model)
            assert config["argv"][:3] == ["claude", "--model", model]
        else:
            opencode = json.loads(env["OPENCODE_CONFIG_CONTENT"])
            provider = opencode["provider"]["mesh"]
            assert provider["options"]["baseURL"] == mesh.api
            assert list(provider["models"]) == [model] and opencode["model"] == f"mesh/{model}"
    # a name the gateway knows as an alias is given under the name the mesh serves
    aliased = print_config(tmp_path, "claude", "--port", port_of(mesh), "--model", "smollm2")
    assert aliased["model"] == model


def test_join_runs_an_api_only_node_while_the_command_runs(
    mesh: ServeProcess, chat_model: Path, tmp_path: Path
) -> None:
    assert mesh.state is not None
    minted = subprocess.run(
        mesh_llm("invite", "--json", "--client", "--uses", "1", "--ttl", "1h"),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MESH_TLS_DIR": str(mesh.state / "credentials")},
    )
    assert minted.returncode == 0, minted.stderr
    token = json.loads(minted.stdout)["token"]
    # a one-use token, twice: the second launch is the same member again
    for _ in range(2):
        port = free_port()
        config = print_config(tmp_path, "opencode", "--port", str(port), "--join", token)
        api = f"http://127.0.0.1:{port}/v1"
        assert config["api"] == api and config["model"] == chat_model.stem
        opencode = json.loads(config["env"]["OPENCODE_CONFIG_CONTENT"])
        assert opencode["provider"]["mesh"]["options"]["baseURL"] == api
        # the node is gone with the command: nothing answers on its port any more
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{api}/models", timeout=5)
    assert list((tmp_path / "mesh-home" / "launch").iterdir())  # where it keeps its state


STAND_IN = """#!/bin/sh
# stands in for a harness: records how it was started, then exits 7 or sleeps
printf '%s\\n' "$@" > "$RECORD.args"
env > "$RECORD.env"
if [ -n "$STAND_IN_SLEEP" ]; then exec sleep "$STAND_IN_SLEEP"; fi
exit 7
"""


def stand_in(tmp_path: Path, name: str) -> Path:
    """A folder holding an executable `name` that only records its argv and environment."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    script = folder / name
    script.write_text(STAND_IN)
    script.chmod(0o755)
    return folder


def test_the_harness_gets_its_config_arguments_and_exit_status(
    mesh: ServeProcess, chat_model: Path, tmp_path: Path
) -> None:
    """With --join: the harness runs on the new node's API, and the node stops after it."""
    token = mesh.wait_event("ready")["client_token"]
    port = free_port()
    record = tmp_path / "record"
    env = mesh_env(
        tmp_path,
        PATH=f"{stand_in(tmp_path, 'claude')}{os.pathsep}{os.environ.get('PATH', '')}",
        RECORD=str(record),
        ANTHROPIC_API_KEY="sk-ant-the-users-own",
    )
    done = subprocess.run(
        mesh_llm("claude", "--port", str(port), "--join", token, "--", "-p", "say hi"),
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert done.returncode == 7, done.stderr  # the harness's own exit status
    args = record.with_suffix(".args").read_text().splitlines()
    assert args[:2] == ["--model", chat_model.stem] and args[-2:] == ["-p", "say hi"]
    seen = dict(
        line.split("=", 1)
        for line in record.with_suffix(".env").read_text().splitlines()
        if "=" in line
    )
    assert seen["ANTHROPIC_BASE_URL"] == f"http://127.0.0.1:{port}"
    assert seen["ANTHROPIC_API_KEY"] == ""  # the user's key never reaches the mesh
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5)


def test_sigterm_reaches_the_harness_and_stops_the_node(mesh: ServeProcess, tmp_path: Path) -> None:
    token = mesh.wait_event("ready")["client_token"]
    port = free_port()
    record = tmp_path / "record"
    env = mesh_env(
        tmp_path,
        PATH=f"{stand_in(tmp_path, 'goose')}{os.pathsep}{os.environ.get('PATH', '')}",
        RECORD=str(record),
        STAND_IN_SLEEP="600",
    )
    process = subprocess.Popen(
        mesh_llm("goose", "--port", str(port), "--join", token),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 240
        while not record.with_suffix(".env").exists():
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "the harness did not start"
            time.sleep(0.2)
        assert record.with_suffix(".args").read_text().splitlines() == ["session"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 128 + signal.SIGTERM  # the harness died of it
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5)


def npm_install(harness: NpmHarness) -> Path:
    """The folder of the harness's executable, installed once and reused."""
    cache = Path(os.environ.get("MESH_TEST_NPM_CACHE", Path.home() / ".cache/mesh-llm/npm"))
    prefix = cache / harness.folder
    bin_dir = prefix / "node_modules" / ".bin"
    if not (bin_dir / harness.binary).exists():
        npm = shutil.which("npm")
        if npm is None:
            cannot_run_here(f"{harness.package} installs with npm, and npm is missing")
        prefix.mkdir(parents=True, exist_ok=True)
        spec = f"{harness.package}@{harness.version}"
        done = subprocess.run(
            [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", spec],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            tail = " | ".join(done.stderr.strip().splitlines()[-3:])
            cannot_run_here(f"npm could not install {spec} (no network for it?): {tail}")
    version = subprocess.run(
        [str(bin_dir / harness.binary), "--version"], capture_output=True, text=True, timeout=60
    )
    if version.returncode != 0:
        cannot_run_here(f"{harness.binary} from npm does not run here: {version.stderr.strip()}")
    return bin_dir


def answered(mesh: ServeProcess, model: str, route: str) -> float:
    """How many requests of this route for the model the gateway answered with 200."""
    text = httpx.get(f"{base_url(mesh)}/metrics", timeout=10).text
    labels = (f'model="{model}"', f'route="{route}"', 'status="200"')
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("meshllm_requests_total{") and all(x in line for x in labels)
    )


@pytest.mark.parametrize("name", sorted(NPM_HARNESSES))
def test_the_harness_runs_through_the_mesh(
    name: str, mesh: ServeProcess, chat_model: Path, tmp_path: Path
) -> None:
    harness = NPM_HARNESSES[name]
    bin_dir = npm_install(harness)
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    env = mesh_env(
        tmp_path,
        PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local/share"),
        XDG_STATE_HOME=str(home / ".local/state"),
        XDG_CACHE_HOME=str(home / ".cache"),
        # the packages opencode installs for itself come from one cache
        npm_config_cache=str(bin_dir.parent.parent / "npm-cache"),
    )
    before = answered(mesh, chat_model.stem, harness.route)
    process = subprocess.Popen(
        mesh_llm(name, "--port", port_of(mesh), "--", *harness.args),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=work,
        env=env,
    )
    try:
        out, err = process.communicate(timeout=HARNESS_TIMEOUT_S)
        finished = True
    except subprocess.TimeoutExpired:
        # still at it (a weak model's rambling): SIGTERM reaches the harness through mesh-llm
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
        finished = False
    shown = f"exit {process.returncode}\nstdout: {out[-2000:]}\nstderr: {err[-2000:]}"
    assert f"{name} on {mesh.api} with {chat_model.stem}" in err, shown
    assert answered(mesh, chat_model.stem, harness.route) > before, shown
    if finished and process.returncode == 0:
        assert out.strip(), shown  # it printed the model's reply


def test_a_mesh_whose_api_wants_a_key_gets_it_from_the_launcher(
    tiny_model: Path, tmp_path: Path
) -> None:
    keyed = local_serve(tmp_path / "keyed", tiny_model, extra=("--api-key", "sk-launch"))
    try:
        keyed.wait_event("model_ready")
        api = ["--api", keyed.api]  # a mesh's API named by its URL, /v1 or not
        config = print_config(tmp_path, "opencode", *api, "--api-key", "sk-launch")
        opencode = json.loads(config["env"]["OPENCODE_CONFIG_CONTENT"])
        assert opencode["provider"]["mesh"]["options"]["apiKey"] == "sk-launch"
        assert config["model"] == tiny_model.stem
        for given, why in (([], "was not given"), (["--api-key", "sk-wrong"], "was refused")):
            done = subprocess.run(
                mesh_llm("goose", "--print-config", *api, *given),
                capture_output=True,
                text=True,
                timeout=60,
                env=mesh_env(tmp_path),
            )
            assert done.returncode == 1
            (line,) = done.stderr.strip().splitlines()
            assert f"wants an API key, and one {why}: pass --api-key" in line
    finally:
        keyed.stop()
