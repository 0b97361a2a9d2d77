"""Compose projects run for real: with Docker's `docker compose` where a Docker engine runs,
else with podman and podman-compose (set up by scripts/podman-setup.sh and
scripts/deploy-tools.sh). Used by the container tests and by bench/compose_stack.py."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def script_output(name: str, *args: str, timeout: float = 900) -> str:
    """The last line a project script prints on stdout; its stderr passes through."""
    done = subprocess.run(
        [str(REPO / "scripts" / name), *args],
        stdout=subprocess.PIPE,
        text=True,
        timeout=timeout,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


def container_engine_problem() -> str | None:
    """None when containers can run here (setting podman up if needed), else why not."""
    if os.geteuid() != 0 and not _docker_works():
        return "no Docker engine, and podman needs root to be set up here"
    try:
        engine = container_engine()
    except (subprocess.CalledProcessError, OSError) as exc:
        return f"podman could not be set up: {exc}"
    probe = subprocess.run(
        [engine, "run", "--rm", "docker.io/library/debian:bookworm-slim", "true"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if probe.returncode != 0:
        lines = probe.stderr.strip().splitlines() or ["no output"]
        return f"{engine} cannot run a container: {lines[-1]}"
    return None


def _docker_works() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def container_engine() -> str:
    """`docker` where a Docker engine runs, else `podman` (installed and set up if needed)."""
    return script_output("podman-setup.sh")


def build_image(backend: str = "cpu") -> str:
    return script_output("build-image.sh", backend, timeout=3600)


@dataclass
class ComposeProject:
    files: list[str]
    variables: dict[str, str]
    project: str = field(default_factory=lambda: f"meshtest{uuid.uuid4().hex[:6]}")

    def __post_init__(self) -> None:
        self.engine = container_engine()
        if self.engine == "docker":
            self.compose = ["docker", "compose"]
        else:
            self.compose = [f"{script_output('deploy-tools.sh')}/podman-compose"]
        clean = {k: v for k, v in os.environ.items() if not k.startswith("MESH_")}
        self.env = {**clean, **self.variables}

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        argv = [*self.compose, "-p", self.project]
        for name in self.files:
            argv += ["-f", str(REPO / "deploy" / name)]
        return subprocess.run(
            [*argv, *args], capture_output=True, text=True, env=self.env, timeout=timeout, cwd=REPO
        )

    def up(self) -> None:
        done = self.run("up", "-d")
        if done.returncode != 0:
            raise RuntimeError(f"compose up failed: {(done.stdout + done.stderr)[-3000:]}")

    def down(self) -> subprocess.CompletedProcess[str]:
        return self.run("down", "-v", timeout=180)

    def logs(self) -> str:
        return "\n".join(
            f"--- {name}\n{_output(self.container_cmd('logs', '--tail', '40', name))}"
            for name in self.containers()
        )

    def container_cmd(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.engine, *args], capture_output=True, text=True, timeout=timeout)

    def containers(self, service: str = "") -> list[str]:
        argv = ["ps", "-a", "--format", "{{.Names}}"]
        argv += ["--filter", f"label=com.docker.compose.project={self.project}"]
        if service:
            argv += ["--filter", f"label=com.docker.compose.service={service}"]
        return self.container_cmd(*argv).stdout.split()

    def container(self, service: str) -> str:
        [name] = self.containers(service)
        return name

    def container_ids(self) -> list[str]:
        argv = ["ps", "-a", "--no-trunc", "--format", "{{.ID}}"]
        argv += ["--filter", f"label=com.docker.compose.project={self.project}"]
        return self.container_cmd(*argv).stdout.split()

    def networks(self) -> list[str]:
        names = self.container_cmd("network", "ls", "--format", "{{.Name}}").stdout.split()
        return [n for n in names if n.startswith(self.project)]


def _output(done: subprocess.CompletedProcess[str]) -> str:
    return (done.stdout + done.stderr)[-3000:]


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until `check()` holds; errors raised by the check count as not yet."""
    started = time.monotonic()
    last = ""
    while True:
        try:
            if check():
                return time.monotonic() - started
        except Exception as exc:  # a service that is not up yet fails in many ways
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s ({last or 'never true'})")
        time.sleep(0.2)
