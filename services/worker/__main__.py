"""The worker service, one per device: `python -m meshllm.worker` (settings from MESH_*)."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from prometheus_client import REGISTRY

from meshllm.core import keys
from meshllm.core.access import check_exposure
from meshllm.core.binaries import build_name, find_binary, find_companion
from meshllm.core.lifecycle import Closer, EmbeddedUvicorn, LoopComponent
from meshllm.core.ports import free_port
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.proto.mesh.v1 import worker_pb2_grpc
from meshllm.core.service import ServiceContext, ServiceParts, service_main
from meshllm.core.streaming import upstream_session

from . import rpc_cache
from .agent import WorkerAgent
from .binaries import rpc_version
from .drafts import DraftGuard
from .gpu_bench import cached_gbps
from .gpus import cap_budget, select_device
from .launchers import LLAMA_SERVER, RPC_SERVER
from .metrics import LlamaScraper, WorkerCollector
from .relay import RelayApp
from .rtt import RttProbe, RttReporter
from .servicer import WorkerServicer
from .settings import WorkerSettings
from .supervisor import Supervisor
from .tunnel import TunnelServer, ping_ms

logger = logging.getLogger(__name__)


class TunnelListener(LoopComponent):
    """The RPC tunnel's listener, open for the worker's lifetime."""

    def __init__(self, server: TunnelServer, host: str, port: int) -> None:
        self._server, self._host, self._port = server, host, port

    async def loop(self) -> None:
        await self._server.start(self._host, self._port)
        await asyncio.Event().wait()

    async def stop(self) -> None:
        await super().stop()
        await self._server.close()


class Drainer(LoopComponent):
    """Stopped first: withdraws the endpoints so gateways stop routing here before the
    processes go."""

    def __init__(self, agent: WorkerAgent) -> None:
        self._agent = agent

    async def loop(self) -> None:
        await asyncio.Event().wait()

    async def stop(self) -> None:
        await super().stop()
        await self._agent.drain()


def device_env(device: pb.Device, llama_cache: str) -> dict[str, str]:
    env = dict(os.environ, LLAMA_CACHE=str(Path(llama_cache).expanduser()))
    if device.kind == pb.DEVICE_KIND_CUDA:
        # the UUID names the device NVML saw whatever order CUDA counts GPUs in
        env["CUDA_VISIBLE_DEVICES"] = device.uuid or str(device.index)
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    return env


async def build(ctx: ServiceContext) -> ServiceParts:
    settings = ctx.settings
    assert isinstance(settings, WorkerSettings)
    device = select_device(settings.device, settings.cpu_memory_fraction, settings.cpu_memory_bytes)
    cap_budget(device, settings.max_memory_bytes)
    device.memory_bandwidth_gbps = cached_gbps(device)  # `mesh-llm gpu benchmark`'s; 0: none
    binary = find_binary("llama-server", settings.supervisor.llama_server)
    logger.info(
        "device %s (%s), budget %.2f GiB, bandwidth %s; llama-server: %s (from %s)",
        device.id,
        device.name,
        device.memory_budget_bytes / 2**30,
        f"{device.memory_bandwidth_gbps:.1f} GB/s"
        if device.memory_bandwidth_gbps
        else "not measured",
        binary.path,
        binary.origin,
    )
    session = upstream_session()
    credentials = ctx.credentials
    check_exposure("the worker relay", settings.bind_host, credentials)
    scheme = "https" if credentials is not None else "http"
    relay_url = f"{scheme}://{settings.advertise_host}:{settings.relay_port}"
    agent = WorkerAgent(settings, ctx.store, ctx.lease, device, relay_url, lambda: ctx.grpc_address)
    binaries = {LLAMA_SERVER: binary.path}
    agent.record.llama_build = build_name(binary.path)
    rpc_server = find_companion("ggml-rpc-server", binary.path)
    if rpc_server is not None:  # without it this worker serves solo, never in a split
        binaries[RPC_SERVER] = rpc_server.path
        agent.record.rpc_version = await rpc_version(rpc_server.path, free_port())
        helper = find_companion(rpc_cache.HELPER, binary.path)
        agent.cache_helper = helper.path if helper is not None else None
    agent.record.tunnel_address = (
        settings.tunnel_advertise or f"{settings.advertise_host}:{settings.tunnel_port}"
    )
    logger.info("RPC protocol %s", agent.record.rpc_version or "unknown: never in a split")
    supervisor = Supervisor(
        settings.supervisor,
        binaries,
        session,
        on_change=agent.on_instance_change,
        base_env=device_env(device, settings.llama_cache_dir),
    )
    agent.supervisor = supervisor
    servicer = WorkerServicer(agent, settings.supervisor.load_timeout_s)

    def port_of(instance_id: str) -> int | None:
        instance = supervisor.instances.get(instance_id)
        return instance.port if instance is not None else None

    def ready() -> str | None:
        return None if agent.assignments.ready.is_set() else "loading assignments from etcd"

    relay = RelayApp(
        port_of,
        lambda: session,
        mesh_id=settings.mesh_id,
        revoked=ctx.revoked,
        tls=credentials is not None,
    )
    relay_server = EmbeddedUvicorn(relay, settings.bind_host, settings.relay_port, tls=credentials)
    tunnel = TunnelServer(
        agent.tunnel_route, credentials, mesh_id=settings.mesh_id, revoked=ctx.revoked
    )
    check_exposure("the RPC tunnel", settings.bind_host, credentials)
    probe = RttProbe(
        settings.node,
        lambda address: ping_ms(address, credentials),
        per_round=settings.rtt_probes_per_round,
    )
    llama_metrics = LlamaScraper(supervisor, lambda: session)
    sup = settings.supervisor
    drafts = DraftGuard(supervisor, llama_metrics, sup.draft_judged_after, sup.draft_min_acceptance)
    REGISTRY.register(
        WorkerCollector(
            agent.record,
            lambda: sum(a.memory_bytes for a in agent.assignments.items.values()),
            lambda: probe.rtt_ms,
            supervisor,
            llama_metrics,
        )
    )
    rtt = RttReporter(
        probe,
        agent.workers,
        ctx.lease,
        keys.rtt(settings.mesh_id, settings.node, agent.worker_id),
        pb.RttReport(node=settings.node, worker_id=agent.worker_id),
        settings.rtt_interval_s,
    )
    return ServiceParts(
        llama_build=agent.record.llama_build,
        register=lambda s: worker_pb2_grpc.add_WorkerServiceServicer_to_server(servicer, s),
        components=[
            Closer(session),
            relay_server,
            TunnelListener(tunnel, settings.bind_host, settings.tunnel_port),
            supervisor,
            agent.workers,
            rtt,
            agent.assignments,
            agent,
            Drainer(agent),
            llama_metrics,
            drafts,
        ],
        ready=ready,
        announce=False,
    )


def cli() -> None:
    service_main("worker", WorkerSettings, build)


if __name__ == "__main__":
    cli()
