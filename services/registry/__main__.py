"""The registry service: `python -m meshllm.registry` (settings from MESH_* variables).
`python -m meshllm.registry fetch NAME` downloads a built-in model into the cache, with progress."""

from __future__ import annotations

import sys
from pathlib import Path

from meshllm.core.config import load_settings
from meshllm.core.errors import MeshError
from meshllm.core.proto.mesh.v1 import registry_pb2_grpc
from meshllm.core.service import ServiceContext, ServiceParts, service_main

from .copies import LocalCopies
from .ranker import ExpertRanker
from .servicer import RegistryServicer
from .settings import RegistrySettings


async def build(ctx: ServiceContext) -> ServiceParts:
    servicer = RegistryServicer(ctx.settings, ctx.store, ctx.lease)  # type: ignore[arg-type]
    copies = LocalCopies(ctx.settings, ctx.store, ctx.lease)  # type: ignore[arg-type]
    ranker = ExpertRanker(ctx.settings, ctx.store, copies.catalog)  # type: ignore[arg-type]
    return ServiceParts(
        register=lambda server: registry_pb2_grpc.add_RegistryServiceServicer_to_server(
            servicer, server
        ),
        components=[copies.catalog, ranker.rankings, copies, ranker],
    )


def fetch(name: str) -> None:
    from .catalog import fetch_builtin

    try:
        cache = Path(load_settings(RegistrySettings).cache_dir).expanduser()
        print(fetch_builtin(name, cache, show_progress=True))
    except MeshError as exc:
        sys.exit(f"registry fetch: {exc.message}")


def cli() -> None:
    if sys.argv[1:2] == ["fetch"] and len(sys.argv) == 3:
        fetch(sys.argv[2])
    else:
        service_main("registry", RegistrySettings, build)


if __name__ == "__main__":
    cli()
