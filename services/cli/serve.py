"""`mesh-llm serve` and `mesh-llm client`: one box running its part of the mesh, every service
as its own process. The first box starts the mesh's etcd (unless --etcd is given) and prints an
invite token; `serve --join TOKEN` adds a box with registry, scheduler (standby), worker and
gateway; `client --join TOKEN` adds only a gateway. Runs until Ctrl-C or SIGTERM, then stops
every child, newest first."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from meshllm.core import keys, pki
from meshllm.core.binaries import find_binary
from meshllm.core.clients import RegistryClient, model_reference
from meshllm.core.config import BaseServiceSettings, load_settings
from meshllm.core.errors import MeshError, Unavailable
from meshllm.core.invite import InvalidToken, InviteToken, decode_token
from meshllm.core.pki import check_node_name
from meshllm.core.process import ChildProcess
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.store import EtcdStore
from meshllm.gateway.guard import read_keys
from meshllm.gateway.settings import GatewaySettings
from meshllm.registry.catalog import ALIASES, BUILTIN
from meshllm.registry.settings import RegistrySettings
from meshllm.scheduler.settings import SchedulerSettings
from meshllm.worker.settings import SupervisorSettings, WorkerSettings

from .discovery import Announcer, discover
from .etcd import EtcdServer, free_port
from .local import RunningNode, default_node_name
from .membership import Founder, MembershipError, MeshAccess, join
from .network import bind_address, lan_address, local_address


class ServeError(Exception):
    """A problem the user can fix; printed as one line."""


@dataclass
class ServeOptions:
    models: list[str] = field(default_factory=list)  # names and GGUF paths, in flag order
    port: int = 9337
    console_port: int = 3131
    etcd: str = ""
    join: InviteToken | None = None
    client_only: bool = False
    node: str = ""
    mesh_name: str = ""
    publish: bool = False  # announce the mesh on the local network (implied by mesh_name)
    auto: bool = False  # join the best mesh announced nearby (or, serving, start one)
    device: str = "auto"
    cpu_memory_gib: float = 0.0
    max_vram_gb: float = 0.0  # cap on what the node offers (GB = 10^9 bytes); 0 = none
    split: bool = False  # split this node's models even where they fit
    tunnel_port: int = 0  # 0 = a free port
    context: int = 0
    parallel: int = 4
    threads: int = 0
    host: str = ""  # the address other nodes reach this one on; "" = this machine's LAN address
    api_host: str = "127.0.0.1"
    api_keys: list[str] = field(default_factory=list)
    api_keys_file: str = ""
    open_api: bool = False  # no keys beyond loopback, on purpose
    cors_origins: list[str] = field(default_factory=list)
    state_dir: str = ""
    json: bool = False
    verbose: bool = False


class Console:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def say(self, text: str, **event: object) -> None:
        if self.as_json:
            if event:
                print(json.dumps(event), flush=True)
        else:
            print(text, flush=True)


def check_port_free(port: int, host: str, flag: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ServeError(
                f"port {port} is not free ({exc.strerror}): choose another with {flag}"
            ) from exc


@dataclass
class Service:
    """One service process; restarted with backoff when it dies, like compose would."""

    name: str
    argv: list[str]
    env: dict[str, str]
    ready_url: str
    log_path: Path
    echo: bool
    process: ChildProcess | None = None
    crashes: list[float] = field(default_factory=list)
    stop_grace_s: float = 30.0

    async def start(self) -> ChildProcess:
        self.process = ChildProcess(
            self.name, self.argv, env=self.env, log_path=self.log_path, echo=self.echo
        )
        await self.process.start()
        return self.process

    def exit_message(self, code: int | None, delay: float) -> str:
        return f"warning: {self.name} exited with {code}; restarting in {delay:.1f}s"


@dataclass
class StoreService:
    """The mesh's private etcd, supervised like the services: restarted on its own ports and
    data directory, so its keys and every node's token stay valid."""

    server: EtcdServer
    name: str = "etcd"
    crashes: list[float] = field(default_factory=list)
    stop_grace_s: float = 5.0
    busy: bool = False  # restarting on purpose (expose): not a crash

    @property
    def process(self) -> ChildProcess:
        return self.server.process

    async def start(self) -> ChildProcess:
        await self.server.start()
        return self.server.process

    def exit_message(self, code: int | None, delay: float) -> str:
        return (
            f"warning: the mesh's store (etcd) exited with {code}; requests go on with what "
            f"every gateway already knows; restarting it in {delay:.1f}s with the same data"
        )


MAX_CRASHES = 5  # within CRASH_WINDOW_S: then the stack gives up
CRASH_WINDOW_S = 60.0


class Stack:
    """The child processes of one `serve`, stopped newest first."""

    def __init__(self, opts: ServeOptions, console: Console) -> None:
        self.opts = opts
        self.console = console
        self.services: list[Service | StoreService] = []  # in start order
        self.store: StoreService | None = None
        self.closers: list[Callable[[], Awaitable[None]]] = []  # run before the children stop
        base = opts.state_dir or os.path.join(tempfile.gettempdir(), f"mesh-llm-{os.getpid()}")
        self.state_dir = Path(base)
        self.log_dir = self.state_dir / "logs"

    async def start_store(self, etcd: EtcdServer) -> None:
        self.console.say("starting the mesh's etcd on this machine (pass --etcd to use your own)")
        self.store = StoreService(etcd)
        self.services.append(self.store)
        try:
            await etcd.start()
        except Unavailable as exc:
            raise ServeError(exc.message) from exc

    async def expose_store(self) -> None:
        """The first node from elsewhere joined: etcd listens beyond loopback from now on
        (restarted on the same data; the supervisor leaves it alone meanwhile)."""
        if self.store is None or self.store.server.exposed:
            return
        self.store.busy = True
        try:
            await self.store.server.expose()
        finally:
            self.store.busy = False
        host = self.store.server.host
        self.console.say(
            f"a node joined from elsewhere: the mesh's etcd now listens on {host}",
            event="store_exposed",
        )

    async def start_service(
        self, kind: str, settings: BaseServiceSettings, extra_env: dict[str, str] | None = None
    ) -> None:
        service = Service(
            name=kind,
            argv=[sys.executable, "-m", f"meshllm.{kind}"],
            env={**os.environ, **settings.to_env(), **(extra_env or {})},
            ready_url=settings.probe_url,
            log_path=self.log_dir / f"{kind}.log",
            echo=self.opts.verbose,
        )
        self.services.append(service)
        await self.wait_ready(await service.start(), service.ready_url)

    async def wait_ready(self, child: ChildProcess, url: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if not child.running:
                    raise ServeError(
                        f"{child.name} exited with {child.returncode}: "
                        f"{child.last_output()} (log: {child.log_path})"
                    )
                try:
                    async with http.get(url, timeout=aiohttp.ClientTimeout(total=1)) as reply:
                        if reply.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(0.1)
        raise ServeError(
            f"{child.name} was not ready after {timeout_s:.0f}s (log: {child.log_path})"
        )

    async def stop(self) -> None:
        for close in self.closers:  # the authority's door and store connection, before etcd
            await close()
        for service in reversed(self.services):
            if service.process is not None:
                await service.process.stop(grace_s=service.stop_grace_s)


async def serve(opts: ServeOptions) -> int:
    console = Console(opts.json)
    check_port_free(opts.port, opts.api_host, "--port")
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
        load_settings(
            GatewaySettings,
            **{**common, "bind_host": opts.api_host},
            http_port=opts.port,
            console_port=opts.console_port,
            api_keys=",".join(opts.api_keys),
            api_keys_file=str(Path(opts.api_keys_file).resolve()) if opts.api_keys_file else "",
            allow_no_api_key=opts.open_api,
            cors_origins=opts.cors_origins,
        ),
    )
    running = RunningNode(
        pid=os.getpid(),
        mesh_id=access.mesh_id,
        node=access.node,
        role=access.role,
        credentials=str(access.credentials),
        api=f"http://localhost:{opts.port}/v1",
    )
    running.register()
    announce_ready(console, stack, opts, access)
    keys = read_keys(opts.api_keys, opts.api_keys_file)
    api_url = f"http://{local_address(opts.api_host)}:{opts.port}"
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


async def join_mesh(stack: Stack, opts: ServeOptions, host: str, token: InviteToken) -> MeshAccess:
    if token.role == pki.CLIENT and not opts.client_only:
        raise ServeError(
            "this invite token is for API clients: run `mesh-llm client --join TOKEN`, or ask "
            "for a serving node's token (mesh-llm invite)"
        )
    stack.console.say(f"joining mesh '{token.mesh_name or token.mesh_id}' …")
    try:
        return await join(
            token, opts.node or default_node_name(), host, stack.state_dir / "credentials"
        )
    except MembershipError as exc:
        raise ServeError(str(exc)) from exc


async def find_mesh(opts: ServeOptions, host: str, console: Console) -> InviteToken | None:
    if not opts.auto:
        return None
    console.say(f"looking for meshes on the network of {host} …")
    meshes = await discover(host)
    if not meshes:
        if opts.client_only:
            raise ServeError("no published mesh found on this network; join one with --join")
        console.say("none found: starting a new one")
        return None
    for mesh in meshes:  # largest first; an announcement with a bad token is passed over
        try:
            token = decode_token(mesh.token)
        except InvalidToken:
            continue
        console.say(
            f"joining mesh '{mesh.name or mesh.mesh_id}' ({mesh.nodes} nodes, "
            f"{mesh.models} models)",
            event="joining",
            mesh=mesh.mesh_id,
        )
        return token
    raise ServeError("the meshes announced nearby carry no valid invite token; use --join")


async def publish(
    token: InviteToken, access: MeshAccess, host: str, opts: ServeOptions, console: Console
) -> None:
    """Announce the mesh on the local network, refreshing its node and model counts. A
    failure here (no multicast on that interface) is reported and serving goes on."""
    try:
        await _announce(token, access, host, opts)
    except (OSError, MeshError) as exc:
        console.say(
            f"warning: cannot announce the mesh on {host}: {exc}", event="warning", message=str(exc)
        )


async def _announce(token: InviteToken, access: MeshAccess, host: str, opts: ServeOptions) -> None:
    announcer = Announcer(
        host,
        token.mesh_name,
        token.mesh_id,
        access.node,
        token.encode(),
        opts.port,
    )
    await announcer.start()
    try:
        credentials = access.tls if access.etcd_tls else None
        async with EtcdStore.connect(access.etcd, credentials=credentials) as store:
            while True:
                await announcer.update(*await mesh_counts(store, token.mesh_id))
                await asyncio.sleep(5)
    finally:
        await announcer.stop()


async def mesh_counts(store: EtcdStore, mesh_id: str) -> tuple[int, int]:
    """(nodes, models) of a mesh: nodes with a worker or a gateway, models with a replica."""
    workers, _ = await store.get_prefix(keys.workers(mesh_id), pb.WorkerRecord)
    services, _ = await store.get_prefix(keys.services(mesh_id), pb.ServiceRecord)
    endpoints, _ = await store.get_prefix(keys.endpoints(mesh_id), pb.Endpoint)
    nodes = {w.node for w in workers.values()} | {s.node for s in services.values()}
    return len(nodes), len({e.model for e in endpoints.values()})


async def found_mesh(stack: Stack, opts: ServeOptions, host: str) -> MeshAccess:
    """The first box: the mesh's CA, authority and etcd run here."""
    if opts.client_only:
        raise ServeError("an API client joins a mesh: pass --join TOKEN or --auto")
    try:
        check_node_name(opts.node or default_node_name())
    except MeshError as exc:
        raise ServeError(f"--node: {exc.message}") from exc
    founder = Founder(stack.state_dir, opts.node or default_node_name(), host)
    stack.closers.append(founder.close)
    mesh_id = founder.prepare()
    try:
        if opts.etcd:
            etcd = opts.etcd.split(",")
        else:
            server = founder.etcd_server(stack.state_dir / "etcd", stack.log_dir / "etcd.log")
            await stack.start_store(server)
            etcd = [server.endpoint]
        access = await founder.open(
            mesh_id,
            etcd,
            mesh_name=opts.mesh_name,
            external_store=bool(opts.etcd),
            expose_store=stack.expose_store,
        )
        access.invites = await founder.mint_startup_invites(opts.publish or bool(opts.mesh_name))
    except MeshError as exc:
        raise ServeError(exc.message) from exc
    except MembershipError as exc:
        raise ServeError(str(exc)) from exc
    return access


async def start_node_services(
    stack: Stack,
    opts: ServeOptions,
    console: Console,
    llama_server: str,
    common: dict[str, object],
    access: MeshAccess,
) -> list[str]:
    registry = load_settings(
        RegistrySettings, **common, grpc_port=free_port(), http_port=free_port()
    )
    await stack.start_service("registry", registry)
    names = await register_models(opts.models, registry, access.tls, console)
    await stack.start_service(
        "scheduler",
        load_settings(
            SchedulerSettings,
            **common,
            grpc_port=free_port(),
            http_port=free_port(),
            placement={"default_context": opts.context or 4096},
        ),
    )
    await stack.start_service(
        "worker",
        load_settings(
            WorkerSettings,
            **common,
            grpc_port=free_port(),
            http_port=free_port(),
            relay_port=free_port(str(common["bind_host"])),
            tunnel_port=opts.tunnel_port or free_port(str(common["bind_host"])),
            device=opts.device,
            cpu_memory_bytes=int(opts.cpu_memory_gib * 2**30),
            max_memory_bytes=int(opts.max_vram_gb * 1e9),
            split=opts.split,
            llama_cache_dir=str(stack.state_dir / "llama-cache"),
            models=",".join(opts.models),
            supervisor=SupervisorSettings(
                llama_server=llama_server,
                parallel=opts.parallel,
                threads=opts.threads,
                log_dir=str(stack.log_dir),
            ),
        ),
    )
    return names


def announce_ready(console: Console, stack: Stack, opts: ServeOptions, access: MeshAccess) -> None:
    api = f"http://localhost:{opts.port}/v1"
    role = "API client" if opts.client_only else "serving node"
    if not opts.client_only and not opts.models:
        role = "standby node"
    lines = [
        f"\nMesh LLM is up ({role} {access.node} in mesh {access.mesh_name or access.mesh_id}).",
        f"  API:     {api}",
    ]
    if role == "standby node":
        lines.append("  models:  none of its own; it serves what the mesh's requests ask for")
    if opts.console_port:
        lines.append(f"  console: http://localhost:{opts.console_port}")
    lines.append(f"  logs:    {stack.log_dir}")
    node_token, client_token = access.invites.get(pki.NODE), access.invites.get(pki.CLIENT)
    if node_token is not None and client_token is not None:
        lines += [
            "",
            "Add machines to this mesh (these invites expire in 24 h; mint more with "
            "`mesh-llm invite`):",
            f"  mesh-llm serve --join {node_token.encode()}",
            f"  mesh-llm client --join {client_token.encode()}    (API only)",
            "An invite lets its holder join the mesh: share it like a password.",
        ]
    console.say(
        "\n".join(lines),
        event="ready",
        api=api,
        mesh=access.mesh_id,
        node=access.node,
        role=access.role,
        token=node_token.encode() if node_token else "",
        client_token=client_token.encode() if client_token else "",
        console=f"http://localhost:{opts.console_port}",
        logs=str(stack.log_dir),
        credentials=str(access.credentials),
    )


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


async def announce_models(
    api: str, names: list[str], console: Console, keys: tuple[str, ...] = ()
) -> None:
    pending = set(names)
    started = time.monotonic()
    headers = {"authorization": f"Bearer {keys[0]}"} if keys else {}
    async with aiohttp.ClientSession(headers=headers) as http:
        while pending:
            try:
                async with http.get(f"{api}/v1/models") as reply:
                    served = {m["id"] for m in (await reply.json())["data"]}
            except (aiohttp.ClientError, ValueError, KeyError):
                served = set()
            for name in sorted(pending & served):
                console.say(
                    f"model {name} is ready ({time.monotonic() - started:.1f}s)",
                    event="model_ready",
                    model=name,
                )
            pending -= served
            await asyncio.sleep(0.25)


async def watch_children(stack: Stack, stop: asyncio.Event) -> int:
    """Until asked to stop. A service that dies is restarted after a growing delay, each in
    its own task (a store that is slow to come back holds up no other restart); one that
    keeps dying takes the stack down with a clear message."""
    restarting: dict[str, asyncio.Task[None]] = {}
    try:
        while not stop.is_set():
            for service in stack.services:
                child = service.process
                busy = service.name in restarting and not restarting[service.name].done()
                busy = busy or getattr(service, "busy", False)
                if child is None or child.running or busy:
                    continue
                delay = record_crash(service, stack.console)
                if delay is None:
                    return 1
                restarting[service.name] = asyncio.create_task(
                    restart(service, delay, stack.console, stop)
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.25)
        return 0
    finally:
        for task in restarting.values():
            task.cancel()
        await asyncio.gather(*restarting.values(), return_exceptions=True)


def record_crash(service: Service | StoreService, console: Console) -> float | None:
    """Says that the service exited; the delay before restarting it, or None when it has
    crashed too often to go on."""
    child = service.process
    assert child is not None
    now = time.monotonic()
    service.crashes = [t for t in service.crashes if now - t < CRASH_WINDOW_S] + [now]
    if len(service.crashes) >= MAX_CRASHES:
        console.say(
            f"error: {service.name} keeps exiting (code {child.returncode}): "
            f"{child.last_output()} (log: {child.log_path})",
            event="error",
            service=service.name,
        )
        return None
    delay = 2 ** (len(service.crashes) - 1) * 0.5
    message = service.exit_message(child.returncode, delay)
    console.say(
        message, event="restart", message=message, service=service.name, code=child.returncode
    )
    return delay


async def restart(
    service: Service | StoreService, delay: float, console: Console, stop: asyncio.Event
) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=delay)
    if stop.is_set():
        return
    try:
        await service.start()
    except (Unavailable, OSError) as exc:  # counted as another crash on the next round
        message = exc.message if isinstance(exc, Unavailable) else str(exc)
        console.say(
            f"warning: {service.name} did not start again: {message}",
            event="warning",
            message=message,
        )
        return
    console.say(f"{service.name} is running again", event="restarted", service=service.name)
