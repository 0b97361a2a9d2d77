"""How to run llama-server for one instance: the argv (a pure function) and its health probe."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp

# Flags the worker owns; a user's extra args may not override them.
OWNED_FLAGS = {
    "--host": 1,
    "--port": 1,
    "-m": 1,
    "--model": 1,
    "--rpc": 1,
    "-c": 1,
    "--ctx-size": 1,
    "-np": 1,
    "--parallel": 1,
    "--alias": 1,
    "-a": 1,
    "--cache-ram": 1,
    "-cram": 1,
    "--metrics": 0,
    "--tensor-split": 1,
    "-ts": 1,
    "--override-tensor": 1,
    "-ot": 1,
    "--mmproj": 1,
    "-mm": 1,
    "--model-draft": 1,
    "--spec-draft-model": 1,
    "-md": 1,
    "--spec-type": 1,
}
# On a CPU host the repeating layers it keeps run on its CPU, but llama.cpp would put the
# output layer on the last RPC device (the full logits would then cross the link every
# token): these weights stay on the host.
HOST_OUTPUT_ON_CPU = "^output=CPU,^token_embd=CPU"


@dataclass(frozen=True)
class InstanceSpec:
    instance_id: str
    model: str
    model_path: str
    context: int
    mmproj_path: str = ""  # a vision model's multimodal projector
    draft_path: str = ""  # a smaller model of its vocabulary that drafts tokens for it
    parallel: int = 4
    threads: int = 0
    gpu_layers: int = 0  # 0 on a CPU device; all layers on a GPU
    assignment_id: str = ""
    memory_bytes: int = 0
    prompt_cache_mib: int = 256  # llama-server's host-RAM prompt cache (--cache-ram)
    extra_args: Sequence[str] = field(default_factory=tuple)
    kind: str = "llama-server"  # which launcher runs it (launchers.LAUNCHERS)
    split: SplitLayout | None = None  # a split's host: the peers it drives


@dataclass(frozen=True)
class SplitLayout:
    """How a split's host spreads the layers: over its peers' rpc-servers (reached through
    the tunnel's loopback endpoints, in device order) and its own device, which comes last
    and so keeps the output layer."""

    rpc_endpoints: tuple[str, ...]
    peer_shares: tuple[float, ...]
    host_share: float
    block_count: int
    host_is_cpu: bool
    flash_attn: bool = False  # flash_attn_over_rpc of the model's head sizes

    def weights(self) -> tuple[float, ...]:
        """`--tensor-split`, in llama.cpp's device order (RPC devices first)."""
        return self.peer_shares if self.host_is_cpu else (*self.peer_shares, self.host_share)

    def gpu_layers(self) -> int:
        # a CPU is not a device llama.cpp splits over: the peers take the last
        # `peer_layers` layers (and the output slot, kept on the CPU), the CPU the rest
        if self.host_is_cpu:
            return peer_layer_count(self.block_count, self.host_share) + 1
        return 999

    def argv(self) -> list[str]:
        flash_attn = "on" if self.flash_attn else "off"
        argv = ["--rpc", ",".join(self.rpc_endpoints), "--flash-attn", flash_attn]
        argv += ["--n-gpu-layers", str(self.gpu_layers())]
        if self.host_is_cpu:
            argv += ["--override-tensor", HOST_OUTPUT_ON_CPU]
        return [*argv, "--tensor-split", ",".join(f"{w:.4f}" for w in self.weights())]


# Head sizes whose flash-attention kernels ran through RPC on every backend tried (CUDA on an
# H200, CPU): a peer whose backend lacks the kernel for a head size aborts (seen on CUDA), so
# any other size runs a split without flash attention. It matters: on the H200 the split with
# it decodes 8 streams 1.5 times as fast (docs/BENCHMARKS.md).
FLASH_ATTN_RPC_HEAD_SIZES = frozenset({128})


def flash_attn_over_rpc(head_dim_k: int, head_dim_v: int) -> bool:
    return head_dim_k == head_dim_v and head_dim_k in FLASH_ATTN_RPC_HEAD_SIZES


def peer_layer_count(block_count: int, host_share: float) -> int:
    """Layers a CPU host leaves to its peers: at least one, and at least one for itself."""
    peers = round(block_count * (1.0 - host_share))
    return max(1, min(block_count - 1, peers)) if block_count > 1 else 1


def build_argv(binary: str, spec: InstanceSpec, port: int) -> list[str]:
    argv = [
        binary,
        "--model",
        spec.model_path,
        "--alias",
        spec.model,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--ctx-size",
        str(spec.context),
        "--parallel",
        str(spec.parallel),
        "--metrics",
        "--no-webui",
        # /v1/embeddings next to chat; generative GGUFs declare no pooling, which the OpenAI
        # route refuses, so mean pooling is the default (a user's --pooling comes later, wins).
        "--embeddings",
        "--pooling",
        "mean",
    ]
    if spec.mmproj_path:
        argv += ["--mmproj", spec.mmproj_path]
    if spec.draft_path and spec.split is None:
        # without --spec-type llama-server loads the draft and never asks it (checked)
        argv += ["--model-draft", spec.draft_path, "--spec-type", "draft-simple"]
        argv += ["--spec-draft-ngl", str(spec.gpu_layers)]
    if spec.split is not None:
        argv += spec.split.argv()
    else:
        argv += ["--n-gpu-layers", str(spec.gpu_layers)]
    if spec.threads:
        argv += ["--threads", str(spec.threads)]
    # llama-server keeps up to 8 GiB of prompts in host RAM by default, outside any budget.
    # A split's host keeps none: saving a slot's prompt copies the KV cache out of every RPC
    # device, dozens of round trips per request (measured: 65 round trips per generated token
    # instead of 1, and 25 times the time to first token)
    cache_mib = 0 if spec.split is not None else spec.prompt_cache_mib
    argv += ["--cache-ram", str(cache_mib)]
    return argv + strip_owned_flags(spec.extra_args)


def strip_owned_flags(args: Sequence[str]) -> list[str]:
    """Drop flags the worker sets itself (and their values) from user-supplied args."""
    kept: list[str] = []
    skip = 0
    for arg in args:
        if skip:
            skip -= 1
            continue
        name = arg.split("=", 1)[0]
        if name in OWNED_FLAGS:
            skip = OWNED_FLAGS[name] if "=" not in arg else 0
            continue
        kept.append(arg)
    return kept


async def health(session: aiohttp.ClientSession, port: int, timeout_s: float) -> int | None:
    """The HTTP status of GET /health (200 ready, 503 loading), None when it does not answer."""
    try:
        async with session.get(
            f"http://127.0.0.1:{port}/health", timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as reply:
            return reply.status
    except (aiohttp.ClientError, TimeoutError):
        return None
