"""The registry service: `python -m meshllm.registry` (settings from MESH_* variables).
`python -m meshllm.registry fetch VALUE` brings the model a `--model` value names to this node,
with progress bars."""

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


def fetch(value: str) -> None:
    """The model a `--model` value names, on this node, with progress bars (download, then
    the checksum); prints its path."""
    from . import sources
    from .progress import hash_bar

    try:
        settings = load_settings(RegistrySettings)
        cache = Path(settings.cache_dir).expanduser()
        resolved = sources.resolve(value, Path(settings.models_dir).expanduser(), cache)
        with hash_bar(resolved.name) as on_hash:
            print(sources.fetch(resolved, cache, progress=True, on_hash=on_hash))
    except MeshError as exc:
        sys.exit(f"mesh-llm: error: {exc.message}")


def cli() -> None:
    if sys.argv[1:2] == ["fetch"] and len(sys.argv) == 3:
        fetch(sys.argv[2])
    else:
        service_main("registry", RegistrySettings, build)


if __name__ == "__main__":
    cli()
