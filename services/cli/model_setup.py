"""The models a `serve` was started with: each downloaded in the foreground when it is not
here yet (with progress bars), then registered with this node's registry."""

from __future__ import annotations

import asyncio
from pathlib import Path

from meshllm.core import pki
from meshllm.core.clients import RegistryClient, model_reference
from meshllm.core.errors import MeshError
from meshllm.registry.settings import RegistrySettings

from .serve_options import ServeError
from .terminal import Console


async def register_models(
    models: list[str], registry: RegistrySettings, credentials: pki.Credentials, console: Console
) -> list[str]:
    names = []
    async with RegistryClient(f"127.0.0.1:{registry.grpc_port}", credentials) as client:
        for value in models:
            ref = model_reference(value)
            if "name" in ref:
                await fetch_with_progress(value, registry, console)
            try:
                entry = await client.register(**ref)
            except MeshError as exc:
                raise ServeError(exc.message) from exc
            console.say(
                f"model {entry.name}: {entry.facts.architecture}, "
                f"{entry.facts.block_count} layers, {entry.facts.file_size_bytes / 1e6:.0f} MB",
                event="registered",
                model=entry.name,
            )
            names.append(entry.name)
    return names


async def fetch_with_progress(value: str, registry: RegistrySettings, console: Console) -> None:
    """A model that is not on this node yet is downloaded in the foreground, where the
    progress bars show (pip's for a built-in, the hub's then the checksum's for a Hugging
    Face model); a failure ends `serve` with one line."""
    from meshllm.registry import sources
    from meshllm.registry.progress import hash_bar

    cache = Path(registry.cache_dir).expanduser()

    def fetch() -> None:
        resolved = sources.resolve(value, Path(registry.models_dir).expanduser(), cache)
        if resolved.path is None:
            console.say(f"downloading {resolved.name} …", event="downloading", model=value)
        with hash_bar(resolved.name) as on_hash:
            sources.fetch(resolved, cache, progress=not console.as_json, on_hash=on_hash)

    try:
        await asyncio.to_thread(fetch)
    except MeshError as exc:
        raise ServeError(f"--model {value}: {exc.message}") from exc
