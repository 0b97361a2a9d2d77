"""The common shape of a service process: connect to etcd, take a lease, serve gRPC (with
health) and HTTP (probes and metrics, or the service's own app), announce itself under
/services/<kind>/, run its components, and stop them all in order."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import uuid
from collections.abc import Awaitable, Callable, Container
from dataclasses import dataclass, field

import grpc

from . import keys
from .access import RevokedSerials
from .config import BaseServiceSettings, load_settings
from .errors import MeshError, PortTaken
from .grpc import ServerSecurity, make_server, set_serving
from .lifecycle import Component, EmbeddedUvicorn, GrpcServer, run_service
from .logging import configure_logging
from .metrics import record_build
from .pki import Credentials
from .ports import PORT_TAKEN_EXIT
from .probes import create_probe_app
from .proto.mesh.v1 import common_pb2 as pb
from .store import EtcdStore, LeaseKeeper, PrefixCache

logger = logging.getLogger(__name__)
VERSION = "0.1.0"


@dataclass
class ServiceContext:
    kind: str
    instance: str
    settings: BaseServiceSettings
    store: EtcdStore
    lease: LeaseKeeper
    credentials: Credentials | None = None  # mutual TLS for every door of the mesh
    revoked: Container[int] = frozenset()  # serials the mesh no longer accepts
    grpc_address: str = ""  # set once the gRPC server listens


@dataclass
class ServiceParts:
    register: Callable[[grpc.aio.Server], None] | None = None
    components: list[Component] = field(default_factory=list)
    ready: Callable[[], str | None] = lambda: None
    http_app: object | None = None  # the service's own ASGI app on bind_host (it answers probes)
    announce: bool = True  # write a ServiceRecord under /services/<kind>/
    llama_build: str = ""  # the llama.cpp build it runs, for meshllm_build_info


def instance_name(kind: str, node: str) -> str:
    return f"{kind}-{node}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


async def run_grpc_service(
    kind: str,
    settings: BaseServiceSettings,
    build: Callable[[ServiceContext], Awaitable[ServiceParts]],
    *,
    store_required: bool = True,
) -> None:
    """`store_required=False`: a service that can be of use without etcd (the gateway
    answers, and serves once its caches have loaded) starts even while etcd is away."""
    credentials = settings.credentials
    async with EtcdStore.connect(
        settings.etcd_endpoint_list,
        required=store_required,
        credentials=settings.etcd_credentials,
    ) as store:
        lease = LeaseKeeper(store, settings.lease_ttl_s)
        await lease.start(required=store_required)
        components: list[Component] = [lease]
        ctx = ServiceContext(
            kind, instance_name(kind, settings.node), settings, store, lease, credentials
        )
        if credentials is not None:
            revocations = PrefixCache(store, keys.revocations(settings.mesh_id), pb.Revocation)
            ctx.revoked = RevokedSerials(settings.mesh_id, lambda: revocations.items)
            components.append(revocations)
        parts = await build(ctx)
        record_build(kind, VERSION, parts.llama_build)
        grpc_address = ""
        if parts.register is not None:
            security = (
                ServerSecurity(credentials, settings.mesh_id, ctx.revoked)
                if credentials is not None
                else None
            )
            server, health, port = make_server(
                f"{settings.bind_host}:{settings.grpc_port}", parts.register, security
            )
            await server.start()
            await set_serving(health, True)
            grpc_address = ctx.grpc_address = f"{settings.advertise_host}:{port}"
            components.append(GrpcServer(server))
        if parts.http_app is not None:
            components.append(
                EmbeddedUvicorn(parts.http_app, settings.bind_host, settings.http_port)
            )
        else:
            probes = create_probe_app(parts.ready)
            components.append(EmbeddedUvicorn(probes, settings.probe_host, settings.http_port))
        if parts.announce:
            await lease.publish(
                keys.service(settings.mesh_id, kind, ctx.instance),
                pb.ServiceRecord(
                    kind=kind,
                    instance=ctx.instance,
                    node=settings.node,
                    grpc_address=grpc_address,
                    version=VERSION,
                    http_address=f"{settings.probe_host}:{settings.http_port}",
                ),
            )
        logger.info(
            "%s %s serving gRPC on %s, HTTP on :%d",
            kind,
            ctx.instance,
            grpc_address or "-",
            settings.http_port,
        )
        await run_service(kind, [*components, *parts.components], grace_s=settings.shutdown_grace_s)


def service_main(
    kind: str,
    settings_type: type[BaseServiceSettings],
    build: Callable[[ServiceContext], Awaitable[ServiceParts]],
    *,
    store_required: bool = True,
) -> None:
    """A service process's entry point: settings from the environment, then the service.
    Bad settings and an unreachable etcd end the process with one line and exit status 2 or 1
    (a container's restart policy then retries), never a traceback."""
    try:
        settings = load_settings(settings_type)
        settings.check_startup()
    except MeshError as exc:
        print(f"{kind}: {exc.message}", file=sys.stderr)
        sys.exit(2)
    configure_logging(kind, settings.log_level, settings.log_format)
    try:
        asyncio.run(run_grpc_service(kind, settings, build, store_required=store_required))
    except MeshError as exc:
        logger.error("%s cannot run: %s", kind, exc.message)
        sys.exit(PORT_TAKEN_EXIT if isinstance(exc, PortTaken) else 1)
