"""Simulated hosts for multi-node tests: one network namespace per node, joined by a bridge
in the test's own address range (198.18.0.0/15 is reserved for network testing). The test
process reaches every node through the bridge. Everything is removed afterwards, even when
the test fails."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
from dataclasses import dataclass, field


def netns_supported() -> str | None:
    """None when namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is missing"
    probe = f"ml-probe-{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def ip(*args: str, ns: str | None = None) -> None:
    prefix = ["ip", "netns", "exec", ns] if ns else []
    subprocess.run([*prefix, "ip", *args], check=True, capture_output=True, text=True)


@dataclass
class Host:
    name: str  # namespace
    address: str

    def command(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def pids(self) -> list[int]:
        done = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True)
        return [int(p) for p in done.stdout.split()]

    def kill_all(self) -> None:
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@dataclass
class Lab:
    subnet: str  # "198.18.N"
    bridge: str
    hosts: list[Host] = field(default_factory=list)

    @classmethod
    def create(cls, count: int) -> Lab:
        tag = secrets.token_hex(2)
        lab = cls(subnet=f"198.18.{int(tag, 16) % 250 + 1}", bridge=f"mlbr{tag}")
        try:
            ip("link", "add", lab.bridge, "type", "bridge")
            ip("addr", "add", f"{lab.subnet}.254/24", "dev", lab.bridge)
            ip("link", "set", lab.bridge, "up")
            for i in range(1, count + 1):
                lab.add_host(f"ml{tag}n{i}", f"{lab.subnet}.{i}", f"mlv{tag}{i}")
        except Exception:
            lab.destroy()
            raise
        return lab

    def add_host(self, name: str, address: str, veth: str) -> None:
        ip("netns", "add", name)
        self.hosts.append(Host(name, address))
        ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name)
        ip("link", "set", veth, "master", self.bridge, "up")
        ip("addr", "add", f"{address}/24", "dev", "eth0", ns=name)
        ip("link", "set", "eth0", "up", ns=name)
        ip("link", "set", "lo", "up", ns=name)

    def destroy(self) -> None:
        for host in self.hosts:
            host.kill_all()
            subprocess.run(["ip", "netns", "del", host.name], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
