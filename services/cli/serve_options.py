"""What `mesh-llm serve` and `mesh-llm client` were asked to do, and the error a user can
fix (printed as one line)."""

from __future__ import annotations

from dataclasses import dataclass, field

from meshllm.core.invite import InviteToken


class ServeError(Exception):
    """A problem the user can fix; printed as one line."""


@dataclass
class ServeOptions:
    models: list[str] = field(default_factory=list)  # names and GGUF paths, in flag order
    contexts: dict[str, int] = field(default_factory=dict)  # model → context (config.toml)
    port: int = 9337
    console_port: int = 3131
    etcd: str = ""
    join: InviteToken | None = None
    client_only: bool = False
    node: str = ""
    mesh_name: str = ""
    publish: bool = False  # announce the mesh on the local network (implied by mesh_name)
    auto: bool = False  # join the best mesh announced nearby (or, serving, start one)
    device: str = "auto"
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
