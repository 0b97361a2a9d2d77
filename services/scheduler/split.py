"""Pipeline splits as a pure function: which devices share a dense model that fits none of
them alone, and in what proportion.

- Never split what fits: a model that fits one device gets no split plan.
- The host is the device with the most free memory; it runs llama-server and keeps the last
  layers and the output (with `--rpc`, llama.cpp puts remote devices first and the host's own
  last, so the logits never cross the link).
- Peers must be within `RTT_CAP_MS` of the host (measured; unknown counts as too far) and run
  the host's RPC protocol version.
- Among the peer sets that fit, the fewest stages win, then the lowest estimated per-token
  time: `compute + Σ RTT(host, peer)` (the host talks to each peer in turn every token).
- Layers go to each device in proportion to its free memory (`--tensor-split` weights), which
  never asks a device for more than it has when the total fits.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

RTT_CAP_MS = 80.0
MAX_CANDIDATES = 12  # nearest peers considered (combinations of these are searched)
MAX_REASONS = 8  # devices left out of a split that a reason names; the rest are counted


class Device(NamedTuple):  # a tuple: built for every device on every split search
    node: str
    worker_id: str
    free_bytes: int
    rpc_version: str = ""  # "" when it cannot run an rpc-server: never a peer
    can_host: bool = True  # holds the model's file (or can fetch it)

    @property
    def name(self) -> str:
        return f"{self.node}/{self.worker_id}"


@dataclass(frozen=True)
class SplitPlan:
    host: Device
    peers: tuple[Device, ...]  # in device order: the host's own device comes after them
    shares: tuple[float, ...]  # peers' then the host's, summing to 1
    per_token_ms: float  # the latency model's estimate

    @property
    def stages(self) -> int:
        return 1 + len(self.peers)


def plan_split(
    need_bytes: int,
    devices: Sequence[Device],
    rtt_ms: Callable[[Device, Device], float | None],
    *,
    compute_ms: float = 0.0,
    cap_ms: float = RTT_CAP_MS,
    force: bool = False,
) -> tuple[SplitPlan | None, list[str]]:
    """The split for a model needing `need_bytes`, or None with the reasons why there is
    none (including: it fits one device, so it must not be split — unless `force`, which
    splits it over the fewest peers anyway, for tests and benchmarks)."""
    hosts = [d for d in devices if d.can_host]
    if not hosts:
        return None, ["no device in the mesh can host it" if devices else "no device in the mesh"]
    fits_alone = [d for d in hosts if d.free_bytes >= need_bytes]
    if fits_alone and not force:
        return None, [f"{fits_alone[0].name} fits it alone: a model that fits is never split"]
    host = min(hosts, key=lambda d: (-d.free_bytes, d.node, d.worker_id))
    peers, reasons = _eligible_peers(host, devices, rtt_ms, cap_ms)
    for count in range(1, len(peers) + 1):
        best = _best_of(host, peers, count, need_bytes, rtt_ms)
        if best is not None:
            chosen, delay = best
            return _plan(host, chosen, compute_ms + delay), reasons
    offered = host.free_bytes + sum(p.free_bytes for p in peers)
    reasons.insert(
        0,
        f"needs {_gib(need_bytes)}; the host {host.name} and {len(peers)} peer(s) within "
        f"{cap_ms:.0f} ms offer {_gib(offered)}",
    )
    return None, reasons


def _eligible_peers(
    host: Device,
    devices: Sequence[Device],
    rtt_ms: Callable[[Device, Device], float | None],
    cap_ms: float,
) -> tuple[list[Device], list[str]]:
    """The peers the host may use, nearest first, and why the others are left out (the
    first MAX_REASONS named, the rest counted: a mesh of thousands has thousands)."""
    peers: list[tuple[float, Device]] = []
    rejected: list[tuple[Device, float | None]] = []
    host_major = _major(host.rpc_version)
    for device in devices:
        if device is host:
            continue
        rtt = 0.0 if device.node == host.node else rtt_ms(host, device)
        usable = device.rpc_version and _major(device.rpc_version) == host_major
        if usable and rtt is not None and rtt < cap_ms:
            peers.append((rtt, device))
        else:
            rejected.append((device, rtt))
    peers.sort(key=lambda item: (item[0], item[1].node, item[1].worker_id))
    reasons = [_left_out(d, host, rtt, cap_ms) for d, rtt in rejected[:MAX_REASONS]]
    if len(rejected) > MAX_REASONS:
        reasons.append(f"and {len(rejected) - MAX_REASONS} more devices left out")
    return [device for _, device in peers[:MAX_CANDIDATES]], reasons


def _left_out(device: Device, host: Device, rtt: float | None, cap_ms: float) -> str:
    if not device.rpc_version:
        return f"{device.name}: cannot run an rpc-server"
    if _major(device.rpc_version) != _major(host.rpc_version):
        return (
            f"{device.name}: RPC protocol {device.rpc_version or '?'}, the host speaks "
            f"{host.rpc_version or '?'}"
        )
    if rtt is None:
        return f"{device.name}: no round-trip time measured from {host.node} yet"
    return f"{device.name}: {rtt:.0f} ms from {host.node}, over the {cap_ms:.0f} ms cap"


def _best_of(
    host: Device,
    peers: list[Device],
    count: int,
    need_bytes: int,
    rtt_ms: Callable[[Device, Device], float | None],
) -> tuple[tuple[Device, ...], float] | None:
    """The `count` peers that, with the host, fit and cost the least time per token."""
    best: tuple[float, tuple[Device, ...]] | None = None
    for chosen in itertools.combinations(peers, count):
        if host.free_bytes + sum(p.free_bytes for p in chosen) < need_bytes:
            continue
        delay = sum(0.0 if p.node == host.node else rtt_ms(host, p) or 0.0 for p in chosen)
        if best is None or delay < best[0]:
            best = (delay, chosen)
    return None if best is None else (best[1], best[0])


def _plan(host: Device, peers: tuple[Device, ...], per_token_ms: float) -> SplitPlan:
    devices = (*peers, host)
    total = sum(d.free_bytes for d in devices)
    shares = tuple(d.free_bytes / total for d in devices)
    return SplitPlan(host, peers, shares, per_token_ms)


def _major(version: str) -> str:
    return version.split(".", 1)[0]


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"
