from __future__ import annotations

from pathlib import Path

from pydantic import Field

from meshllm.core.config import BaseServiceSettings, Section
from meshllm.core.model_copies import COPIES
from meshllm.core.ports import worker_port_range


def _default_log_dir() -> str:
    return str(Path.home() / ".cache" / "mesh-llm" / "logs")


def _default_llama_cache() -> str:
    return str(Path.home() / ".cache" / "mesh-llm" / "llama-cache")


class SupervisorSettings(Section):
    llama_server: str = Field("", description="path of llama-server; empty: search (see binaries)")
    port_range: str = Field(
        worker_port_range(0),
        description="loopback ports for llama-server and rpc-server; each worker of a node its own",
    )
    load_timeout_s: float = Field(300.0, gt=0)
    stop_grace_s: float = Field(10.0, gt=0)
    health_interval_s: float = Field(1.0, gt=0)
    health_timeout_s: float = Field(3.0, gt=0)
    max_health_misses: int = Field(3, ge=1)
    restart_backoff_s: float = Field(2.0, gt=0, description="first restart delay; doubles")
    restart_backoff_max_s: float = Field(120.0, gt=0)
    stable_after_s: float = Field(60.0, gt=0, description="ready this long resets the backoff")
    parallel: int = Field(4, ge=1, description="llama-server slots (--parallel)")
    threads: int = Field(0, ge=0, description="llama-server --threads; 0 = its default")
    prompt_cache_mib: int = Field(
        256, ge=0, description="llama-server's host-RAM prompt cache (--cache-ram; 0 = off)"
    )
    draft_min_acceptance: float = Field(
        0.3, ge=0, le=1, description="a draft right less often than this is dropped (0: never)"
    )
    draft_judged_after: int = Field(
        256, ge=1, description="drafted tokens before a draft is judged by how often it was right"
    )
    log_dir: str = Field(default_factory=_default_log_dir)
    extra_args: list[str] = Field(default_factory=list, description="appended to llama-server")

    @property
    def ports(self) -> range:
        low, _, high = self.port_range.partition("-")
        return range(int(low), int(high or low) + 1)


class ModelOptions(Section):
    """What config.toml says of one of `models`, beyond its name."""

    model: str  # as given in `models`
    context: int = Field(0, description="its context; 0 = the mesh default", ge=0)
    mmproj: str = Field("", description="its multimodal projector (a path or hub reference)")
    draft: str = Field("", description="a smaller model of its family to draft with")


class WorkerSettings(BaseServiceSettings):
    grpc_port: int = 9340
    http_port: int = Field(9341, description="/health, /readyz and /metrics (on probe_host)")
    relay_port: int = Field(9342, description="the relay other nodes' gateways stream through")
    tunnel_port: int = Field(9343, description="the RPC tunnel a split's host reaches peers by")
    tunnel_advertise: str = Field(
        "", description="host:port other nodes reach the tunnel on (behind NAT or a proxy)"
    )
    rpc_stall_s: float = Field(
        60.0, gt=0, description="a peer leaving an RPC request unanswered this long is lost"
    )
    rtt_interval_s: float = Field(2.0, gt=0, description="how often RTT to other nodes is probed")
    rtt_probes_per_round: int = Field(
        32, ge=1, description="the most nodes one RTT round probes (a big mesh in turns)"
    )
    max_memory_bytes: int = Field(
        0, ge=0, description="cap on what this device offers the mesh (0 = no cap; CPU and GPU)"
    )
    split: bool = Field(False, description="split this node's models even where they fit")
    llama_cache_dir: str = Field(
        default_factory=_default_llama_cache,
        description="LLAMA_CACHE of the processes; rpc-servers keep tensors in its rpc/",
    )
    shard_dir: str = Field(
        "", description="where expert shards delivered to this node are kept (default: "
        "shards/ under llama_cache_dir)"
    )  # fmt: skip
    device: str = Field("auto", description="'auto', 'cpu', or a GPU index / UUID")
    worker_id: str = Field("", description="default: the device id")
    cpu_memory_fraction: float = Field(0.5, gt=0, le=1, description="share of RAM for models")
    cpu_memory_bytes: int = Field(0, ge=0, description="explicit CPU budget; overrides fraction")
    models: str = Field("", description="comma-separated models (names or GGUF paths) to serve")
    model_options: list[ModelOptions] = Field(
        default_factory=list, description="the context or projector of some of `models`"
    )
    pin_to_device: bool = Field(
        False,
        description="`models` run on this worker's device only (config.toml's pinned GPUs), "
        "not on any device of this node",
    )
    supervisor: SupervisorSettings = Field(default_factory=SupervisorSettings)

    @property
    def rpc_cache_path(self) -> Path:
        return Path(self.llama_cache_dir).expanduser() / "rpc"

    @property
    def shard_path(self) -> Path:
        if self.shard_dir:
            return Path(self.shard_dir).expanduser()
        return Path(self.llama_cache_dir).expanduser() / "shards"

    @property
    def copy_path(self) -> Path:
        """Where copies of models whose file only other nodes hold are kept."""
        return Path(self.llama_cache_dir).expanduser() / COPIES

    @property
    def model_list(self) -> list[str]:
        return [m.strip() for m in self.models.split(",") if m.strip()]
