"""`mesh-llm serve` and `mesh-llm client`: one box running its part of the mesh, every service
as its own process. The first box starts the mesh's etcd (unless --etcd is given) and prints an
invite token; `serve --join TOKEN` adds a box with registry, scheduler (standby), worker and
gateway; `client --join TOKEN` adds only a gateway. Runs until Ctrl-C or SIGTERM, then stops
every child, newest first."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from functools import partial
from pathlib import Path

from meshllm.core import pki
from meshllm.core.binaries import find_binary
from meshllm.core.config import load_settings
from meshllm.core.errors import Unavailable
from meshllm.core.model_copies import COPIES
from meshllm.core.ports import free_port, reserve, worker_port_range
from meshllm.gateway.guard import read_keys
from meshllm.gateway.settings import GatewaySettings
from meshllm.registry.settings import RegistrySettings
from meshllm.scheduler.settings import SchedulerSettings
from meshllm.worker.settings import ModelOptions, SupervisorSettings, WorkerSettings

from .local import RunningNode
from .membership import MeshAccess
from .mesh_entry import find_mesh, found_mesh, join_mesh, publish
from .model_setup import pick_model, register_models
from .network import bind_address, lan_address, local_address
from .plugins import plugin_service
from .serve_options import ServeError, ServeOptions, WorkerPart
from .stack import Stack, watch_children
from .terminal import Console, announce_models, announce_ready


def check_port_free(port: int, host: str, flag: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ServeError(
                f"port {port} is not free ({exc.strerror}): choose another with {flag}"
            ) from exc


async def serve(opts: ServeOptions) -> int:
    console = Console(opts.json)
    check_port_free(opts.port, opts.api_host, "--port")
    tunnels = (
        [opts.tunnel_port + i for i in range(len(opts.workers) or 1)] if opts.tunnel_port else []
    )
    reserve(opts.port, opts.console_port, *tunnels)  # never handed to one of our services
    if opts.console_port:
        check_port_free(opts.console_port, opts.api_host, "--console-port")
    llama = ""
    if not opts.client_only:
        try:
            llama = find_binary("llama-server").path
        except Unavailable as exc:
            raise ServeError(exc.message) from exc
    stack = Stack(opts, console)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        return await _run(stack, opts, console, llama, stop)
    finally:
        console.say("stopping…", event="stopping")
        await stack.stop()
        console.say("stopped", event="stopped")


async def _run(
    stack: Stack, opts: ServeOptions, console: Console, llama_server: str, stop: asyncio.Event
) -> int:
    host = opts.host or lan_address()
    token = opts.join or await find_mesh(opts, host, console)
    if opts.auto and token is None and not opts.client_only and not opts.models:
        opts.models = [pick_model(opts, console)]  # a new mesh serves what fits this machine
    access = await (join_mesh(stack, opts, host, token) if token else found_mesh(stack, opts, host))
    common = {
        "etcd_endpoints": ",".join(access.etcd),
        "mesh_id": access.mesh_id,
        "tls_dir": str(access.credentials),
        "etcd_tls": access.etcd_tls,
        "advertise_host": host,
        "bind_host": bind_address(host),
        "node": access.node,
    }
    names: list[str] = []
    if not opts.client_only:
        names = await start_node_services(stack, opts, console, llama_server, common, access)
    await stack.start_service(
        "gateway",
        lambda: load_settings(
            GatewaySettings,
            **{**common, "bind_host": opts.api_host},
            http_port=opts.port,
            console_port=opts.console_port,
            api_keys=",".join(opts.api_keys),
            api_keys_file=str(Path(opts.api_keys_file).resolve()) if opts.api_keys_file else "",
            allow_no_api_key=opts.open_api,
            cors_origins=opts.cors_origins,
            headless=opts.headless,
            invite_token=_invite(access, pki.NODE),
            client_invite_token=_invite(access, pki.CLIENT),
        ),
    )
    running = RunningNode(
        pid=os.getpid(),
        mesh_id=access.mesh_id,
        node=access.node,
        role=access.role,
        credentials=str(access.credentials),
        api=f"http://localhost:{opts.port}/v1",
        console=f"http://localhost:{opts.console_port}" if opts.console_port else "",
    )
    running.register()
    announce_ready(console, stack.log_dir, opts, access)
    keys = read_keys(opts.api_keys, opts.api_keys_file)
    api_url = f"http://{local_address(opts.api_host)}:{opts.port}"
    await start_plugins(stack, opts, api_url, keys[:1])
    tasks = [asyncio.create_task(announce_models(api_url, names, console, keys[:1]))]
    published = access.invites.get(pki.NODE) or token
    if (
        published is not None
        and published.extra.get("published") == "1"
        and published.role == pki.NODE
    ):
        tasks.append(asyncio.create_task(publish(published, access, host, opts, console)))
    try:
        return await watch_children(stack, stop)
    finally:
        running.unregister()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _invite(access: MeshAccess, role: str) -> str:
    token = access.invites.get(role)
    return token.encode() if token is not None else ""


async def start_plugins(stack: Stack, opts: ServeOptions, api_url: str, key: list[str]) -> None:
    console = f"http://{local_address(opts.api_host)}:{opts.console_port}"
    for plugin in opts.plugins:
        service = plugin_service(
            plugin,
            stack.state_dir,
            f"{api_url}/v1",
            key[0] if key else "",
            console if opts.console_port else "",
            opts.verbose,
        )
        await stack.start_extra(service)
        stack.console.say(f"plugin {plugin.name} started", event="plugin_started", name=plugin.name)


async def start_node_services(
    stack: Stack,
    opts: ServeOptions,
    console: Console,
    llama_server: str,
    common: dict[str, object],
    access: MeshAccess,
) -> list[str]:
    registry = await stack.start_service(
        "registry",
        lambda: load_settings(
            RegistrySettings,
            **common,
            grpc_port=free_port(),
            http_port=free_port(),
            copies_dir=str(stack.llama_cache / COPIES),
        ),
    )
    names = await register_models(opts, registry, access.tls, console)
    await stack.start_service(
        "scheduler",
        lambda: load_settings(
            SchedulerSettings,
            **common,
            grpc_port=free_port(),
            http_port=free_port(),
            placement={"default_context": opts.context or 4096},
        ),
    )
    parts = opts.workers or [WorkerPart(opts.device, pinned=False)]
    for i, part in enumerate(parts):
        settings = partial(worker_settings, opts, common, i, part, llama_server, stack)
        await stack.start_service("worker", settings, name=part.service_name(i, len(parts)))
    return names


def worker_settings(
    opts: ServeOptions,
    common: dict[str, object],
    index: int,
    part: WorkerPart,
    llama_server: str,
    stack: Stack,
) -> WorkerSettings:
    """The `index`-th worker's settings, on fresh ports at each call."""
    bind = str(common["bind_host"])
    models = part.pins(opts.models)
    return load_settings(
        WorkerSettings,
        **common,
        grpc_port=free_port(),
        http_port=free_port(),
        relay_port=free_port(bind),
        tunnel_port=opts.tunnel_port + index if opts.tunnel_port else free_port(bind),
        device=part.device,
        cpu_memory_bytes=int(opts.cpu_memory_gib * 2**30),
        max_memory_bytes=int(opts.max_vram_gb * 1e9),
        split=opts.split,
        llama_cache_dir=str(stack.llama_cache),
        models=",".join(models),
        model_options=[
            ModelOptions(
                model=m,
                context=opts.contexts.get(m, 0),
                mmproj=opts.projectors.get(m, ""),
                draft=opts.drafts.get(m, ""),
            )
            for m in models
            if m in opts.contexts or m in opts.projectors or m in opts.drafts
        ],
        pin_to_device=part.pinned,
        supervisor=SupervisorSettings(
            llama_server=llama_server,
            port_range=worker_port_range(index),
            parallel=opts.parallel,
            threads=opts.threads,
            log_dir=str(stack.log_dir),
        ),
    )
