"""The registry service: `python -m meshllm.registry` (settings from MESH_* variables).
`python -m meshllm.registry fetch NAME` downloads a built-in model into the cache, with progress."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from meshllm.core.logging import configure_logging
from meshllm.core.proto.mesh.v1 import registry_pb2_grpc
from meshllm.core.service import ServiceContext, ServiceParts, run_grpc_service

from .servicer import RegistryServicer
from .settings import RegistrySettings


async def build(ctx: ServiceContext) -> ServiceParts:
    servicer = RegistryServicer(ctx.settings, ctx.store, ctx.lease)  # type: ignore[arg-type]
    return ServiceParts(
        register=lambda server: registry_pb2_grpc.add_RegistryServiceServicer_to_server(
            servicer, server
        )
    )


def cli() -> None:
    settings = RegistrySettings()
    if sys.argv[1:2] == ["fetch"] and len(sys.argv) == 3:
        from .catalog import fetch_builtin

        print(fetch_builtin(sys.argv[2], Path(settings.cache_dir).expanduser(), show_progress=True))
        return
    configure_logging("registry", settings.log_level, settings.log_format)
    asyncio.run(run_grpc_service("registry", settings, build))


if __name__ == "__main__":
    cli()
