"""The models a `serve` was started with: built-ins downloaded in the foreground (with
pip's progress bar), each registered with this node's registry."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from meshllm.core import pki
from meshllm.core.clients import RegistryClient, model_reference
from meshllm.core.errors import MeshError
from meshllm.registry.catalog import ALIASES, BUILTIN
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
            if "name" in ref and ALIASES.get(value, value) in BUILTIN:
                fetch_with_progress(value, registry, console)
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


def fetch_with_progress(name: str, registry: RegistrySettings, console: Console) -> None:
    """Built-in models are downloaded in the foreground, where pip's progress bar shows."""
    cached = Path(registry.cache_dir).expanduser() / f"{ALIASES.get(name, name)}.gguf"
    if cached.is_file():
        return
    console.say(f"downloading {name} ({BUILTIN[ALIASES.get(name, name)].size_hint}) …")
    done = subprocess.run(
        [sys.executable, "-m", "meshllm.registry", "fetch", name],
        env={**os.environ, **registry.to_env()},
        stdout=subprocess.DEVNULL if console.as_json else None,
        check=False,
    )
    if done.returncode != 0:
        raise ServeError(f"could not download {name}; check the network or pass --gguf PATH")
