"""The models a `serve` was started with: each downloaded in the foreground when it is not
here yet (with progress bars), then registered with this node's registry."""

from __future__ import annotations

import asyncio
from pathlib import Path

from meshllm.core import pki
from meshllm.core.clients import RegistryClient, model_reference
from meshllm.core.errors import MeshError
from meshllm.registry import model_catalog
from meshllm.registry.settings import RegistrySettings

from .serve_options import ServeError, ServeOptions
from .terminal import Console


async def register_models(
    opts: ServeOptions,
    registry: RegistrySettings,
    credentials: pki.Credentials,
    console: Console,
) -> list[str]:
    """The node's models, each with its configured projector and draft."""
    names = []
    async with RegistryClient(f"127.0.0.1:{registry.grpc_port}", credentials) as client:
        for value in opts.models:
            ref = model_reference(value)
            mmproj, draft = opts.projectors.get(value, ""), opts.drafts.get(value, "")
            if "name" in ref:
                await fetch_with_progress(value, mmproj, registry, console)
            fetched = model_catalog.draft_for(value, draft)  # the registry refuses a bad one
            if fetched and "name" in model_reference(fetched):
                await fetch_with_progress(fetched, "", registry, console)
            try:
                entry = await client.register(**ref, mmproj=mmproj, draft=draft)
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


async def fetch_with_progress(
    value: str, mmproj: str, registry: RegistrySettings, console: Console
) -> None:
    """A model (and a vision model's projector) that is not on this node yet is downloaded
    in the foreground, where the progress bars show (pip's for a built-in, the hub's then the
    checksum's for a Hugging Face model); a failure ends `serve` with one line."""
    from meshllm.registry import sources
    from meshllm.registry.progress import hash_bar

    cache = Path(registry.cache_dir).expanduser()

    def fetch() -> None:
        resolved = sources.resolve(value, Path(registry.models_dir).expanduser(), cache)
        if resolved.path is None:
            console.say(f"downloading {resolved.name} …", event="downloading", model=value)
        with hash_bar(resolved.name) as on_hash:
            sources.fetch(resolved, cache, progress=not console.as_json, on_hash=on_hash)
        sources.projector(mmproj, value, resolved.source, cache, progress=not console.as_json)

    try:
        await asyncio.to_thread(fetch)
    except MeshError as exc:
        raise ServeError(f"--model {value}: {exc.message}") from exc


def pick_model(opts: ServeOptions, console: Console) -> str:
    """`serve --auto` founding a mesh with no model given: the largest catalog model that
    fits what this machine's largest device offers (as its worker will measure it)."""
    from meshllm.registry import model_catalog
    from meshllm.worker.gpus import cap_budget, nvidia_devices, select_device, worker_devices
    from meshllm.worker.settings import WorkerSettings

    fraction = WorkerSettings.model_fields["cpu_memory_fraction"].default
    gpus = nvidia_devices()
    try:
        devices = [
            select_device(d, fraction, int(opts.cpu_memory_gib * 2**30), probe=lambda: gpus)
            for d in worker_devices(opts.device, gpus)
        ]
    except ValueError as exc:
        raise ServeError(f"--device: {exc}") from exc
    # what fits one device: a model is never split where one device can hold it
    budget = max(cap_budget(d, int(opts.max_vram_gb * 1e9)).memory_budget_bytes for d in devices)
    fitting = model_catalog.fitting(budget)
    if not fitting:
        raise ServeError(
            f"--auto: no catalog model fits the {budget / 1e9:.1f} GB this machine offers; "
            "pass --model NAME or --gguf PATH"
        )
    chosen = fitting[0]
    console.say(
        f"--auto: this machine offers {budget / 1e9:.1f} GB: serving {chosen.name} "
        f"({chosen.parameters}, {chosen.size_bytes / 1e9:.1f} GB), the largest catalog model "
        "that fits",
        event="auto_model",
        model=chosen.name,
        budget_bytes=budget,
    )
    return chosen.name
