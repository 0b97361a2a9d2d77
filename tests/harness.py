"""One way for tests to run `mesh-llm serve` (or `client`) as a user does: the real command, its
`--json` events read as they come, the API and console it answers on."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import httpx
import openai


def mesh_llm(*args: str) -> list[str]:
    return [sys.executable, "-m", "meshllm.cli", *args]


@dataclass
class ServeProcess:
    name: str
    argv: list[str]  # the whole command (wrapped in `ip netns exec …` for a simulated host)
    api: str  # http://HOST:PORT/v1
    console: str = ""  # http://HOST:PORT, or "" when it runs none
    process: subprocess.Popen[str] | None = None
    events: list[dict] = field(default_factory=list)

    def start(self) -> ServeProcess:
        self.events = []
        self.process = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        threading.Thread(target=self._read, args=(self.process,), daemon=True).start()
        return self

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("{"):
                self.events.append(json.loads(line))
            elif line.strip():
                self.events.append({"output": line.strip()})

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def wait_event(self, kind: str, count: int = 1, timeout: float = 180) -> dict:
        """The `count`-th event of that kind, waiting for it as long as serve runs."""
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.events if e.get("event") == kind]
            if len(found) >= count:
                return found[count - 1]
            assert self.process is not None and self.process.poll() is None, (
                f"{self.name} exited: {self.events}"
            )
            assert time.monotonic() < deadline, f"{self.name}: no {kind}: {self.events}"
            time.sleep(0.1)

    def served(self) -> dict[str, list[str]]:
        """Every model the API lists, with the nodes of its replicas."""
        models = httpx.get(f"{self.api}/models", timeout=10).json()["data"]
        return {m["id"]: sorted(r["node"] for r in m["meshllm"]["replicas"]) for m in models}

    def status(self) -> dict:
        return httpx.get(f"{self.console}/api/status", timeout=10).json()

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.api, api_key="unused", max_retries=0, timeout=60)

    def stop(self, timeout: float = 60) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)
