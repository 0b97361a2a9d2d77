"""What `mesh-llm serve` and `mesh-llm client` were asked to do, and the error a user can
fix (printed as one line)."""

from __future__ import annotations

from dataclasses import dataclass, field

from meshllm.core.invite import InviteToken

from .config_file import PluginConfig


class ServeError(Exception):
    """A problem the user can fix; printed as one line."""


@dataclass(frozen=True)
class WorkerPart:
    """One worker of this node: its device and, with config.toml's pinned GPUs, the models
    pinned to it (unpinned, a worker pins every model of its node)."""

    device: str
    pinned: bool
    models: tuple[str, ...] = ()

    def pins(self, node_models: list[str]) -> list[str]:
        return list(self.models) if self.pinned else node_models

    def service_name(self, i: int, count: int) -> str:
        return "worker" if count == 1 else f"worker-{i}"


def node_workers(
    devices: list[str], models: list[str], pins: dict[str, list[str]]
) -> list[WorkerPart]:
    """A worker per device. Without pins every worker pins all the node's models (placement
    picks the device); with pins each worker pins those that name its device, and a device
    no model names serves the mesh. ValueError: a pinned device left out of `devices`."""
    if not pins:
        return [WorkerPart(d, False) for d in devices]
    for model, wanted in pins.items():
        missing = [d for d in wanted if d not in devices]
        if missing:
            raise ValueError(
                f"{model} is pinned to {missing[0]}, which this node runs no worker on: name it "
                "in --device, or leave --device auto"
            )
    return [WorkerPart(d, True, tuple(m for m in models if d in pins[m])) for d in devices]


@dataclass
class ServeOptions:
    models: list[str] = field(default_factory=list)  # names and GGUF paths, in flag order
    contexts: dict[str, int] = field(default_factory=dict)  # model → context (config.toml)
    projectors: dict[str, str] = field(default_factory=dict)  # model → mmproj (config.toml)
    drafts: dict[str, str] = field(default_factory=dict)  # model → its draft model
    port: int = 9337
    console_port: int = 3131
    headless: bool = False  # the console's API without its page
    etcd: str = ""
    join: InviteToken | None = None
    client_only: bool = False
    node: str = ""
    mesh_name: str = ""
    publish: bool = False  # announce the mesh on the local network (implied by mesh_name)
    auto: bool = False  # join the best mesh announced nearby (or, serving, start one)
    device: str = "auto"  # 'auto' (every GPU, else the CPU), 'cpu', or GPU indexes / UUIDs
    workers: list[WorkerPart] = field(default_factory=list)  # [] = one, on --device
    plugins: list[PluginConfig] = field(default_factory=list)  # config.toml's, enabled
    cpu_memory_gib: float = 0.0
    max_vram_gb: float = 0.0  # cap on what the node offers (GB = 10^9 bytes); 0 = none
    split: bool = False  # split this node's models even where they fit
    tunnel_port: int = 0  # 0 = a free port
    context: int = 0
    parallel: int = 4
    threads: int = 0
    host: str = ""  # the address other nodes reach this one on; "" = this machine's LAN address
    api_host: str = "127.0.0.1"
    api_keys: list[str] = field(default_factory=list)
    api_keys_file: str = ""
    open_api: bool = False  # no keys beyond loopback, on purpose
    cors_origins: list[str] = field(default_factory=list)
    state_dir: str = ""
    json: bool = False
    verbose: bool = False
