"""The `mesh-llm` command as a user runs it: help, and bad input that must end in one clear
line and a non-zero exit, with nothing left running."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from meshllm.core.ports import free_port
from meshllm.core.process import process_table

pytestmark = pytest.mark.e2e
MESH_LLM = [sys.executable, "-m", "meshllm.cli"]


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MESH_LLM, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or dict(os.environ),
    )


def assert_one_line_error(done: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("mesh-llm: error: ")
    assert "Traceback" not in done.stderr + done.stdout
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def test_no_arguments_prints_help_and_binds_nothing() -> None:
    done = run(timeout=20)
    assert done.returncode == 0
    assert "usage: mesh-llm" in done.stdout and "serve" in done.stdout
    assert "localhost:9337" in done.stdout


def test_serve_help_explains_the_flags() -> None:
    done = run("serve", "--help", timeout=20)
    for flag in ("--model", "--gguf", "--port", "--console-port", "--etcd", "--json"):
        assert flag in done.stdout


def test_a_text_file_as_gguf(tmp_path: Path) -> None:
    text = tmp_path / "readme.txt"
    text.write_text("this is not a model\n")
    line = assert_one_line_error(
        run("serve", "--gguf", str(text), "--port", "0"), "--port 0 is not a valid port"
    )
    assert line
    done = run(
        "serve",
        "--gguf",
        str(text),
        "--port",
        str(free_port()),
        "--console-port",
        "0",
        "--state-dir",
        str(tmp_path / "state"),
    )
    assert_one_line_error(done, str(text), "is not a GGUF file")


def test_a_truncated_gguf(tmp_path: Path, tiny_model: Path) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_model.read_bytes()[:100_000])
    done = run(
        "serve",
        "--gguf",
        str(cut),
        "--port",
        str(free_port()),
        "--console-port",
        "0",
        "--state-dir",
        str(tmp_path / "state"),
    )
    assert_one_line_error(done, str(cut), "truncated")


def test_missing_file_and_unknown_name(tmp_path: Path) -> None:
    assert_one_line_error(run("serve", "--gguf", str(tmp_path / "nope.gguf")), "no such file")
    done = run(
        "serve",
        "--model",
        "no-such-model",
        "--port",
        str(free_port()),
        "--console-port",
        "0",
        "--state-dir",
        str(tmp_path / "state"),
    )
    assert_one_line_error(done, "no model named 'no-such-model'")


def test_port_in_use() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert_one_line_error(
            run("serve", "--standby", "--port", str(port)), f"port {port} is not free", "--port"
        )


def test_etcd_missing_gives_an_install_hint(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    env = {**os.environ, "PATH": str(bin_dir)}
    done = run("serve", "--standby", "--port", str(free_port()), "--console-port", "0", env=env)
    assert_one_line_error(done, "etcd is not installed", "apt-get install etcd-server", "--etcd")


def test_split_flags_out_of_range_end_before_anything_starts() -> None:
    port = str(free_port())
    assert_one_line_error(run("serve", "--port", port, "--max-vram", "-1"), "--max-vram -1")
    assert_one_line_error(
        run("serve", "--port", port, "--tunnel-port", "99999"), "--tunnel-port 99999"
    )


def test_inspect(tiny_model: Path, tmp_path: Path) -> None:
    facts = json.loads(run("inspect", str(tiny_model), "--json").stdout)
    assert facts["architecture"] == "llama" and facts["block_count"] == 4
    (tmp_path / "x.gguf").write_bytes(b"")
    assert_one_line_error(run("inspect", str(tmp_path / "x.gguf")), "is empty")


def test_make_model(tmp_path: Path) -> None:
    out = tmp_path / "m.gguf"
    done = run("dev", "make-model", "--layers", "2", "--out", str(out), "--json")
    assert done.returncode == 0 and json.loads(done.stdout) == {"path": str(out)}
    assert json.loads(run("inspect", str(out), "--json").stdout)["block_count"] == 2
    assert_one_line_error(
        run("dev", "make-model", "--embedding", "100", "--heads", "3"),
        "invalid model shape",
        "multiple of heads",
    )


def test_etcd_is_found_on_path() -> None:
    assert shutil.which("etcd"), "make test installs etcd-server; it must be on PATH"


def test_token_errors_end_before_anything_starts(tmp_path: Path) -> None:
    from meshllm.core.invite import InviteToken

    values = {"mesh_id": "m-1", "etcd": ["127.0.0.1:1"], "ca": "x", "invite": "id.secret"}
    good = InviteToken(**values, authority=f"127.0.0.1:{free_port()}").encode()
    for bad, fragment in [
        (good[:-4], "truncated or damaged"),
        ("eyJhbGciOi.JIUzI1NiJ9.x", "not a Mesh LLM invite token"),
        (good.replace("mesh1.", "mesh7."), "not a Mesh LLM invite token"),
    ]:
        for command in ("serve", "client"):
            done = run(command, "--join", bad, "--state-dir", str(tmp_path / "s"), timeout=20)
            assert_one_line_error(done, "--join", fragment)
    assert not (tmp_path / "s").exists()
    expired = InviteToken(**values, authority="127.0.0.1:1", expires=1).encode()
    client = InviteToken(**values, authority="127.0.0.1:1", role="client").encode()
    state = ["--state-dir", str(tmp_path / "s"), "--port", str(free_port())]
    assert_one_line_error(run("serve", "--join", expired, *state, timeout=30), "expired")
    assert_one_line_error(run("serve", "--join", client, *state, timeout=30), "API clients")
    assert_one_line_error(
        run("client", "--join", good, *state, timeout=60), "cannot reach the mesh's authority"
    )
    assert_one_line_error(run("client", timeout=20), "--join TOKEN or --auto")
    assert_one_line_error(
        run("serve", "--join", good, "--mesh-name", "x", timeout=20), "not with --join"
    )
    assert not [p for p in process_table().values() if str(tmp_path) in p.command]


def start_service(service: str, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESH_")}
    return subprocess.run(
        [sys.executable, "-m", f"meshllm.{service}"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, **variables},
    )


def assert_service_refused(
    done: subprocess.CompletedProcess[str], status: int, fragment: str
) -> None:
    assert done.returncode == status, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("service", ["gateway", "scheduler", "registry", "worker"])
def test_service_processes_end_bad_settings_in_one_line(service: str) -> None:
    """What a container runtime shows for a misconfigured service: one line, no traceback,
    a non-zero status (so its restart policy and logs say what is wrong)."""
    done = start_service(service, MESH_LEASE_TTL_S="soon")
    assert_service_refused(done, 2, "MESH_LEASE_TTL_S")
    done = start_service(service, MESH_JOIN="mesh1.abc")
    assert_service_refused(done, 2, "invite token is truncated or damaged")


def test_a_service_without_etcd_says_so_and_exits() -> None:
    """The gateway is the exception: it waits for the store, answering 503 meanwhile."""
    done = start_service("scheduler", MESH_ETCD_ENDPOINTS=f"127.0.0.1:{free_port()}")
    assert_service_refused(done, 1, "is not reachable")


def test_admin_commands_say_what_is_missing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESH_")}
    env["MESH_HOME"] = str(tmp_path)  # no node runs from here
    assert_one_line_error(run("invite", env=env), "no mesh-llm node runs on this machine")
    assert_one_line_error(run("members", env=env), "--credentials DIR")
    assert_one_line_error(run("invite", "--ttl", "soon", env=env), "--ttl 'soon'")
    assert_one_line_error(run("invite", "--uses", "0", env=env), "--uses")
    assert_one_line_error(
        run("revoke", "box1", "--credentials", str(tmp_path), env=env), "no mesh membership"
    )


def test_an_api_beyond_loopback_needs_keys(tmp_path: Path) -> None:
    state = ["--state-dir", str(tmp_path / "s"), "--port", str(free_port())]
    assert_one_line_error(run("serve", "--api-host", "0.0.0.0", *state), "without API keys")
    assert_one_line_error(
        run("serve", "--api-keys-file", str(tmp_path / "none"), *state), "cannot read"
    )
    assert_one_line_error(run("client", "--auto", "--api-key", "a,b", *state), "cannot contain")
    done = start_service("gateway", MESH_BIND_HOST="0.0.0.0")
    assert_service_refused(done, 2, "without API keys")
    assert not (tmp_path / "s").exists()


def test_a_service_refuses_to_face_the_network_without_credentials() -> None:
    done = start_service("registry", MESH_BIND_HOST="0.0.0.0")
    assert_service_refused(done, 2, "without TLS")
    done = start_service("worker", MESH_BIND_HOST="0.0.0.0", MESH_TLS_DIR="/nonexistent")
    assert_service_refused(done, 2, "no ca.crt, node.crt, node.key in /nonexistent")


def test_serve_with_a_bad_setting_in_the_environment(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {**os.environ, "MESH_LEASE_TTL_S": "soon"}
    done = run("serve", "--standby", "--port", str(free_port()), "--state-dir", str(state), env=env)
    assert_one_line_error(done, "MESH_LEASE_TTL_S", "'soon'")
    assert not [p for p in process_table().values() if str(state) in p.command]


def test_registry_fetch_of_an_unknown_name() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "meshllm.registry", "fetch", "no-such-model"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("mesh-llm: error: no model named 'no-such-model': ")
    assert "smollm2-135m-instruct" in line
