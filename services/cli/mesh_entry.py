"""How a box enters a mesh: founding a new one (CA, authority and etcd here), joining one
with an invite token, finding one announced nearby (`--auto`), and announcing one."""

from __future__ import annotations

import asyncio

from meshllm.core import keys, pki
from meshllm.core.errors import MeshError
from meshllm.core.invite import InvalidToken, InviteToken, decode_token
from meshllm.core.pki import check_node_name
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.store import EtcdStore

from .discovery import Announcer, discover
from .local import default_node_name
from .membership import Founder, MembershipError, MeshAccess, join
from .serve_options import ServeError, ServeOptions
from .stack import Stack
from .terminal import Console


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
