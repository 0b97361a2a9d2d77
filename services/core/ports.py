"""Ports a node picks for its own processes before they listen.

Binding port 0 and closing hands out a port from the kernel's ephemeral range, the range
every outgoing connection takes its local port from: between the pick and the child's own
bind, a connection to etcd or to a peer may take it. So ports are drawn at random from
pools below that range, checked free, and never handed out twice by one process:
`SERVICE_PORTS` for the services `serve` starts, `LLAMA_PORTS` for the llama-servers and
rpc-servers of a node's workers (100 each, so workers sharing one loopback never meet).
A child that still finds its port taken exits with `PORT_TAKEN_EXIT`, and `serve` starts it
again on fresh ports."""

from __future__ import annotations

import random
import socket
from pathlib import Path

SERVICE_PORTS = range(20000, 30000)
LLAMA_PORTS = range(30000, 32000)
PORTS_PER_WORKER = 100
LINUX_EPHEMERAL = range(32768, 61000)
EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
PORT_TAKEN_EXIT = 3  # a service's exit status when a port it was given is taken

_handed_out: set[int] = set()


def ephemeral_range(path: Path = EPHEMERAL_RANGE_FILE) -> range:
    try:
        low, high = (int(p) for p in path.read_text().split())
    except (OSError, ValueError):
        return LINUX_EPHEMERAL
    return range(low, high + 1)


def outside(pool: range, ephemeral: range) -> list[int]:
    """The ports of `pool` that the kernel never hands out by itself."""
    return [p for p in pool if p not in ephemeral]


def worker_port_range(index: int) -> str:
    """The llama-server ports of a node's `index`-th worker, as its `port_range` setting."""
    low = LLAMA_PORTS.start + PORTS_PER_WORKER * index
    return f"{low}-{low + PORTS_PER_WORKER - 1}"


def bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def reserve(*ports: int) -> None:
    """Ports this process was told to use (`serve --port`): never handed out to another."""
    _handed_out.update(p for p in ports if p)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing on `host` holds now, outside the ephemeral range, not one this process
    handed out or reserved before; the kernel's pick where the pool is used up."""
    pool = outside(SERVICE_PORTS, ephemeral_range())
    for port in random.sample(pool, min(len(pool), 64)):
        if port not in _handed_out and bindable(host, port):
            _handed_out.add(port)
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
