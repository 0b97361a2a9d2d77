"""The worker's link to the mesh: publishes its WorkerRecord, turns its assignments into
running instances, and publishes each instance's endpoint exactly while it is ready.
Everything it writes hangs on its lease, so it all vanishes with the worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path

from meshllm.core import keys
from meshllm.core.clients import RegistryClient, model_reference
from meshllm.core.errors import MeshError, NotFound, Refused, Unavailable
from meshllm.core.gguf_header import read_header
from meshllm.core.lifecycle import LoopComponent
from meshllm.core.model_copies import runs_from_a_copy
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.store import EtcdStore, LeaseKeeper, PrefixCache, StoreFailure

from . import rpc_cache
from .launchers import RPC_SERVER
from .llama_server import InstanceSpec, SplitLayout, flash_attn_over_rpc
from .metrics import MODEL_LOAD
from .model_copy import obtain_model_copy
from .settings import WorkerSettings
from .shard_copy import LoggedProgress, ShardSource, obtain_shard
from .supervisor import InstanceState, ManagedInstance, Supervisor
from .tunnel import Route, TunnelClient

logger = logging.getLogger(__name__)

_STATE_TO_PB = {
    InstanceState.STARTING: pb.INSTANCE_STATE_STARTING,
    InstanceState.LOADING: pb.INSTANCE_STATE_LOADING,
    InstanceState.READY: pb.INSTANCE_STATE_READY,
    InstanceState.FAILED: pb.INSTANCE_STATE_FAILED,
    InstanceState.STOPPING: pb.INSTANCE_STATE_STOPPING,
    InstanceState.STOPPED: pb.INSTANCE_STATE_STOPPED,
}
MANUAL_PREFIX = "manual-"


class WorkerAgent(LoopComponent):
    def __init__(
        self,
        settings: WorkerSettings,
        store: EtcdStore,
        lease: LeaseKeeper,
        device: pb.Device,
        relay_url: str,
        grpc_address: Callable[[], str],
    ) -> None:
        self.settings = settings
        self._store = store
        self._lease = lease
        self.worker_id = settings.worker_id or device.id
        self.record = pb.WorkerRecord(
            node=settings.node,
            worker_id=self.worker_id,
            device=device,
            relay_url=relay_url,
            version="0.1.0",
            started_unix=int(time.time()),
            pins_models=bool(settings.model_list),
        )
        self.assignments = PrefixCache(
            store, keys.assignments(settings.mesh_id, settings.node, self.worker_id), pb.Assignment
        )
        # every worker of the mesh: a split's host finds its peers here (and the RTT probe
        # its targets)
        self.workers = PrefixCache(store, keys.workers(settings.mesh_id), pb.WorkerRecord)
        self.supervisor: Supervisor | None = None
        self._pinned_models = settings.model_list
        self._grpc_address = grpc_address
        self._dirty = asyncio.Event()
        self._started_at: dict[str, float] = {}  # instance → when it last started
        self._hosts: dict[str, asyncio.Task[None]] = {}  # host assignment → its start-up
        # peer assignment → cache fill and start; shard assignment → shard copy and start
        self._starting: dict[str, asyncio.Task[None]] = {}
        self.tunnels: dict[str, list[TunnelClient]] = {}  # host assignment → one per peer
        self.cache_helper: str | None = None  # mesh-rpc-cache-fill, when built
        self._sent_at_start: dict[str, int] = {}  # host instance → tunnel bytes when it started
        self.load_bytes: dict[str, int] = {}  # host instance → bytes sent to peers loading
        self.assignments.listeners.append(self._dirty.set)
        lease.on_new_lease.append(self._on_new_lease)

    @property
    def _key(self) -> str:
        return keys.worker(self.settings.mesh_id, self.settings.node, self.worker_id)

    async def publish_record(self) -> None:
        self.record.lease_id = self._lease.lease_id
        self.record.grpc_address = self._grpc_address()
        if self.supervisor is not None:
            del self.record.instances[:]
            self.record.instances.extend(  # a stopped instance is gone, not a state to show
                instance_message(i, self.load_bytes.get(i.spec.instance_id, 0))
                for i in self.supervisor.instances.values()
                if i.state != InstanceState.STOPPED
            )
        await self._lease.publish(self._key, self.record)

    async def _on_new_lease(self, lease_id: int) -> None:
        await self.publish_record()

    async def pin_models(self, models: list[str], registry: RegistryClient) -> list[str]:
        """Register the models this node was started with and record the demand for them,
        pinned (to this node, or to this device) for as long as this worker lives."""
        names = []
        options = {o.model: o for o in self.settings.model_options}
        for value in models:
            given = options.get(value)
            mmproj = given.mmproj if given is not None else ""
            draft = given.draft if given is not None else ""
            entry = await registry.register(**model_reference(value), mmproj=mmproj, draft=draft)
            names.append(entry.name)
            key = keys.demand_entry(
                self.settings.mesh_id, entry.name, self.settings.node, self.worker_id
            )
            await self._lease.publish(
                key,
                pb.Demand(
                    model=entry.name,
                    origin=self.settings.node,
                    pinned=True,
                    split=self.settings.split,
                    context=given.context if given is not None else 0,
                    worker_id=self.worker_id if self.settings.pin_to_device else "",
                ),
            )
        return names

    async def _pin_with_retry(self) -> None:
        while self._pinned_models:
            try:
                async with await RegistryClient.discover(
                    self._store,
                    self.settings.mesh_id,
                    self.settings.node,
                    self.settings.credentials,
                ) as registry:
                    names = await self.pin_models(self._pinned_models, registry)
                logger.info("serving on request of this node: %s", ", ".join(names))
                return
            except Unavailable as exc:
                logger.info("waiting for the registry: %s", exc.message)
                await asyncio.sleep(1.0)

    def _time_load(self, instance: ManagedInstance) -> None:
        """meshllm_model_load_seconds: from an instance's (re)start to its being ready."""
        iid = instance.spec.instance_id
        if instance.state == InstanceState.STARTING:
            self._started_at[iid] = time.monotonic()
        elif instance.state == InstanceState.READY and iid in self._started_at:
            MODEL_LOAD.labels(instance.spec.model).observe(
                time.monotonic() - self._started_at.pop(iid)
            )

    def _count_load(self, instance: ManagedInstance) -> None:
        """A host's bytes to its peers from its process start to ready: what its load cost."""
        clients = self.tunnels.get(instance.spec.assignment_id)
        if not clients:
            return
        sent = sum(c.traffic.to_peer for c in clients)
        if instance.state == InstanceState.STARTING:
            self._sent_at_start[instance.spec.instance_id] = sent
        elif instance.state == InstanceState.READY:
            start = self._sent_at_start.get(instance.spec.instance_id, 0)
            self.load_bytes[instance.spec.instance_id] = sent - start
            logger.info(
                "split host %s loaded: %.1f MB sent to its peers",
                instance.spec.instance_id,
                (sent - start) / 1e6,
            )

    async def on_instance_change(self, instance: ManagedInstance) -> None:
        self._count_load(instance)
        self._time_load(instance)
        spec = instance.spec
        key = keys.endpoint(self.settings.mesh_id, spec.model, spec.instance_id)
        try:
            serving = instance.launcher.serves_requests and not self.record.draining
            if instance.state == InstanceState.READY and serving:
                await self._lease.publish(
                    key,
                    pb.Endpoint(
                        model=spec.model,
                        instance_id=spec.instance_id,
                        node=self.settings.node,
                        worker_id=self.worker_id,
                        local_url=f"http://127.0.0.1:{instance.port}",
                        relay_url=self.record.relay_url,
                        slots=spec.parallel,
                        context=spec.context,
                    ),
                )
            else:
                await self._lease.withdraw(key)
            await self.publish_record()
        except StoreFailure as exc:
            logger.warning("could not publish the state of %s: %s", spec.instance_id, exc)

    async def drain(self) -> None:
        self.record.draining = True
        for key in self._owned_endpoint_keys():
            await self._lease.withdraw(key)
        await self.publish_record()

    def _owned_endpoint_keys(self) -> list[str]:
        if self.supervisor is None:
            return []
        return [
            keys.endpoint(self.settings.mesh_id, i.spec.model, i.spec.instance_id)
            for i in self.supervisor.instances.values()
        ]

    async def loop(self) -> None:
        try:
            await self.publish_record()
            await self._pin_with_retry()
            await self.assignments.ready.wait()
            while True:
                self._dirty.clear()
                await self._reconcile()
                await self._dirty.wait()
        finally:  # no start (a download, a copy) outlives the worker
            for task in self._starting.values():
                task.cancel()

    async def _reconcile(self) -> None:
        assert self.supervisor is not None
        wanted = {a.id: a for a in self.assignments.items.values()}
        running = {i.spec.assignment_id: i for i in self.supervisor.instances.values()}
        for assignment_id in [k for k in self._hosts if k not in wanted]:
            await self._stop_host(assignment_id)
        for assignment_id in [k for k in self._starting if k not in wanted]:
            task = self._starting.pop(assignment_id)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for assignment_id, instance in running.items():
            if assignment_id not in wanted and not assignment_id.startswith(MANUAL_PREFIX):
                logger.info(
                    "assignment %s gone: stopping %s", assignment_id, instance.spec.instance_id
                )
                await self.supervisor.remove(instance.spec.instance_id)
        for assignment_id, a in wanted.items():
            if assignment_id in running or assignment_id in self._hosts:
                continue
            if assignment_id in self._starting and not self._starting[assignment_id].done():
                continue
            try:
                if a.role == pb.ASSIGNMENT_ROLE_PEER:
                    self._starting[a.id] = asyncio.create_task(self._start_peer(a))
                elif a.role == pb.ASSIGNMENT_ROLE_SHARD:
                    self._starting[a.id] = asyncio.create_task(self._start_shard(a))
                elif a.role == pb.ASSIGNMENT_ROLE_HOST:
                    self._hosts[a.id] = asyncio.create_task(self._start_host(a))
                else:  # its file may have to be fetched or copied first: not in the loop
                    self._starting[a.id] = asyncio.create_task(self._start_solo(a))
            except MeshError as exc:
                logger.warning(
                    "cannot start %s for assignment %s: %s", a.model, assignment_id, exc.message
                )

    async def _start_solo(self, a: pb.Assignment) -> None:
        try:
            await self.start_instance(a.model, a.context, a.id, a.memory_bytes, draft=a.draft)
        except MeshError as exc:
            logger.warning("cannot start %s for assignment %s: %s", a.model, a.id, exc.message)

    async def _start_peer(self, a: pb.Assignment) -> None:
        try:
            await self._fill_rpc_cache(a)
        except MeshError as exc:
            logger.info("%s: no local copy to fill the RPC cache from (%s)", a.model, exc.message)
        except Exception:  # a copy that cannot be read must not keep the peer from starting
            logger.exception("%s: the RPC cache could not be filled", a.model)
        try:
            self.start_peer(a)
        except MeshError as exc:
            logger.warning("cannot start the split peer of %s: %s", a.model, exc.message)

    async def _start_shard(self, a: pb.Assignment) -> None:
        """An expert shard: its copy on this node (written, measured and sent by the registry
        that holds the model), then a llama-server on it. A transfer or registry that fails
        is tried again; a shard that fails the quality gate is not (placement withdraws it)."""
        label = f"shard {a.shard.shard_id} of {a.model} ({a.shard.expert_count} experts)"
        source = ShardSource(
            self._store, self.settings.mesh_id, self.settings.node, self.settings.credentials
        )
        delay = 2.0
        while True:
            try:
                path = await obtain_shard(
                    source, a.model, a.shard, self.settings.shard_path, LoggedProgress(label)
                )
                await self.start_instance(a.model, a.context, a.id, a.memory_bytes, path=path)
                return
            except Refused as exc:
                logger.warning("%s will not be served: %s", label, exc.message)
                return
            except MeshError as exc:
                logger.warning("%s: %s; trying again in %.0fs", label, exc.message, delay)
            except OSError as exc:
                logger.warning("%s: %s; trying again in %.0fs", label, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60.0)

    async def _fill_rpc_cache(self, a: pb.Assignment) -> None:
        """Before a peer's rpc-server starts: its layers' large tensors, hashed from this
        node's copy of the GGUF into the cache (rpc_cache.py). Without a copy, the host sends
        them once and the rpc-server keeps them."""
        if self.cache_helper is None or not a.peers:
            return
        async with await RegistryClient.discover(
            self._store, self.settings.mesh_id, self.settings.node, self.settings.credentials
        ) as registry:
            located = await registry.locate(a.model, self.settings.node)
        host = a.peers[0]
        await self.workers.ready.wait()
        lead = await self._store.get(
            keys.assignment(self.settings.mesh_id, host.node, host.worker_id, a.group_id),
            pb.Assignment,
        )
        record = self._worker_record(host.node, host.worker_id)
        order = [p.assignment_id for p in lead.peers] if lead is not None else []
        if lead is None or record is None or a.id not in order:
            return
        layout = split_layout(lead, (), located.facts, record.device.kind)
        layers = rpc_cache.device_layers(
            layout.block_count, layout.weights(), layout.gpu_layers(), order.index(a.id)
        )
        gguf = Path(located.path)
        header = await asyncio.to_thread(read_header, gguf)
        tensors = rpc_cache.tensors_to_fill(header.tensors, layers)
        label = f"{a.model} layers {min(layers, default=0)}-{max(layers, default=0)}"
        done = await rpc_cache.fill_cache(
            self.cache_helper, gguf, self.settings.rpc_cache_path, tensors, label
        )
        logger.info(
            "%s: RPC cache filled from %s: %d tensors, %.1f GB (%d new) in %.1fs",
            label,
            located.path,
            done.tensors,
            done.bytes / 1e9,
            done.written,
            done.seconds,
        )

    def start_peer(self, a: pb.Assignment) -> ManagedInstance:
        """A split's peer: an rpc-server holding layers for its host (no endpoint of its own)."""
        assert self.supervisor is not None
        spec = InstanceSpec(
            instance_id=peer_instance_id(self.worker_id, a.id),
            model=a.model,
            model_path="",
            context=a.context,
            threads=self.settings.supervisor.threads,
            assignment_id=a.id,
            memory_bytes=a.memory_bytes,
            kind=RPC_SERVER,
        )
        return self.supervisor.start(spec)

    def tunnel_route(self, instance_id: str) -> Route | None:
        """Where the tunnel may take a host: a ready rpc-server of this worker, to the host
        its assignment names."""
        if self.supervisor is None:
            return None
        instance = self.supervisor.instances.get(instance_id)
        if instance is None or instance.spec.kind != RPC_SERVER:
            return None
        if instance.state != InstanceState.READY:
            return None
        assignment = next(
            (a for a in self.assignments.items.values() if a.id == instance.spec.assignment_id),
            None,
        )
        if assignment is None:
            return None
        host = next((p.node for p in assignment.peers), "")
        return Route(instance.port, host)

    async def _start_host(self, a: pb.Assignment) -> None:
        """A split's host: once every peer's rpc-server is ready, a tunnel to each and a
        llama-server driving them."""
        try:
            targets = await self._wait_for_peers(a)
            clients = []
            for peer, address in targets:
                client = TunnelClient(
                    address,
                    peer_instance_id(peer.worker_id, peer.assignment_id),
                    self.settings.credentials,
                    stall_s=self.settings.rpc_stall_s,
                    on_lost=lambda why, aid=a.id: self._peer_lost(aid, why),
                )
                await client.start()
                clients.append(client)
            self.tunnels[a.id] = clients
            await self.start_instance(
                a.model,
                a.context,
                a.id,
                a.memory_bytes,
                split_of=(a, tuple(c.endpoint for c in clients)),
            )
        except MeshError as exc:
            logger.warning("cannot start the split host of %s: %s", a.model, exc.message)
        except TimeoutError:
            logger.warning("the peers of %s (%s) never became ready", a.model, a.id)
        except Exception:  # a task nobody awaits: say what broke rather than vanish
            logger.exception("the split host of %s (%s) failed to start", a.model, a.id)

    def _worker_record(self, node: str, worker_id: str) -> pb.WorkerRecord | None:
        return self.workers.items.get(keys.worker(self.settings.mesh_id, node, worker_id))

    async def _wait_for_peers(self, a: pb.Assignment) -> list[tuple[pb.PeerShare, str]]:
        """Each peer with its worker's tunnel address, once the worker records (watched)
        show its rpc-server ready."""
        changed = asyncio.Event()
        self.workers.listeners.append(changed.set)
        try:
            async with asyncio.timeout(self.settings.supervisor.load_timeout_s):
                while True:
                    changed.clear()
                    records = [self._worker_record(p.node, p.worker_id) for p in a.peers]
                    ready = [
                        r is not None and _peer_ready(r, p.assignment_id)
                        for r, p in zip(records, a.peers, strict=True)
                    ]
                    if all(ready):
                        return [
                            (p, r.tunnel_address)
                            for p, r in zip(a.peers, records, strict=True)
                            if r is not None
                        ]
                    await changed.wait()
        finally:
            self.workers.listeners.remove(changed.set)

    def _peer_lost(self, assignment_id: str, why: str) -> None:
        """A peer went away under a host: stop serving at once (its llama-server would abort
        on the next request, or hang on a frozen peer); the supervisor starts it again."""
        logger.warning("split %s lost a peer: %s", assignment_id, why)
        if self.supervisor is None:
            return
        for instance in self.supervisor.instances.values():
            if instance.spec.assignment_id == assignment_id and instance.process is not None:
                instance.message = why
                instance.process.signal(signal.SIGKILL)

    async def _stop_host(self, assignment_id: str) -> None:
        task = self._hosts.pop(assignment_id)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert self.supervisor is not None
        for instance in list(self.supervisor.instances.values()):
            if instance.spec.assignment_id == assignment_id:
                await self.supervisor.remove(instance.spec.instance_id)
        for client in self.tunnels.pop(assignment_id, []):
            await client.close()

    async def start_instance(
        self,
        model: str,
        context: int,
        assignment_id: str,
        memory_bytes: int = 0,
        split_of: tuple[pb.Assignment, tuple[str, ...]] | None = None,
        path: Path | None = None,
        draft: str = "",
    ) -> ManagedInstance:
        """A llama-server for `model`: its file as the registry locates it on this node, or
        the file at `path` (an expert shard); with `draft`, that model drafts for it."""
        assert self.supervisor is not None
        model_path, facts, projector = await self._model_file(model, path)
        draft_path = await self._draft_file(model, draft) if draft else ""
        context = context or min(facts.context_length or 4096, 4096)
        sup = self.settings.supervisor
        spec = InstanceSpec(
            instance_id=f"{self.worker_id}-{assignment_id}",
            model=model,
            model_path=model_path,
            mmproj_path=projector,
            draft_path=draft_path,
            context=context,
            parallel=sup.parallel,
            threads=sup.threads,
            prompt_cache_mib=sup.prompt_cache_mib,
            assignment_id=assignment_id,
            memory_bytes=memory_bytes,
            gpu_layers=0 if self.record.device.kind == pb.DEVICE_KIND_CPU else 999,
            extra_args=tuple(sup.extra_args),
            split=None
            if split_of is None
            else split_layout(*split_of, facts, self.record.device.kind),
        )
        return self.supervisor.start(spec)

    async def _draft_file(self, model: str, draft: str) -> str:
        """The draft's file on this node (located, downloaded or copied like any model's);
        "" when it cannot be had: the model then runs without it."""
        try:
            path, _, _ = await self._model_file(draft, None)
        except MeshError as exc:
            logger.warning("%s runs without its draft %s: %s", model, draft, exc.message)
            return ""
        return path

    async def _model_file(self, model: str, path: Path | None) -> tuple[str, pb.ModelFacts, str]:
        """The model's file, its facts and its projector's file ("" for a text model, and
        for an expert shard, which is text only)."""
        if path is not None:
            key = keys.catalog_entry(self.settings.mesh_id, model)
            entry = await self._store.get(key, pb.CatalogEntry)
            if entry is None:
                raise NotFound(f"model '{model}' is not in the catalog")
            return str(path), entry.facts, ""
        async with await RegistryClient.discover(
            self._store, self.settings.mesh_id, self.settings.node, self.settings.credentials
        ) as registry:
            try:
                located = await registry.locate(model, self.settings.node)
            except NotFound:
                located = None
        if located is not None:
            return located.path, located.facts, located.projector_path
        entry = await self._store.get(
            keys.catalog_entry(self.settings.mesh_id, model), pb.CatalogEntry
        )
        if entry is None or not runs_from_a_copy(entry):
            raise NotFound(f"the file of '{model}' is not on node {self.settings.node}")
        source = ShardSource(
            self._store, self.settings.mesh_id, self.settings.node, self.settings.credentials
        )
        progress = LoggedProgress(f"copy of {model}")
        path = await obtain_model_copy(source, model, self.settings.copy_path, progress)
        return str(path), entry.facts, ""


def split_layout(
    host: pb.Assignment, endpoints: tuple[str, ...], facts: pb.ModelFacts, host_device: int
) -> SplitLayout:
    """How a host spreads a model over its peers (reached at `endpoints`) and itself."""
    return SplitLayout(
        rpc_endpoints=endpoints,
        peer_shares=tuple(p.share for p in host.peers),
        host_share=host.share,
        block_count=facts.block_count,
        host_is_cpu=host_device == pb.DEVICE_KIND_CPU,
        flash_attn=flash_attn_over_rpc(facts.head_dim_k, facts.head_dim_v),
    )


def peer_instance_id(worker_id: str, assignment_id: str) -> str:
    return f"{worker_id}-{assignment_id}"


def _peer_ready(record: pb.WorkerRecord, assignment_id: str) -> bool:
    return any(
        i.assignment_id == assignment_id and i.state == pb.INSTANCE_STATE_READY
        for i in record.instances
    )


def instance_message(instance: ManagedInstance, load_bytes: int = 0) -> pb.Instance:
    return pb.Instance(
        rpc_load_bytes=load_bytes,
        id=instance.spec.instance_id,
        model=instance.spec.model,
        assignment_id=instance.spec.assignment_id,
        state=_STATE_TO_PB[instance.state],
        port=instance.port,
        memory_bytes=instance.spec.memory_bytes,
        restart_count=instance.restart_count,
        last_exit_code=instance.last_exit_code,
        message=instance.message,
    )
