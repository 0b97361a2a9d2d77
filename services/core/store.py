"""etcd, the mesh's only shared state: a thin async wrapper over `aetcd`, plus the two pieces
every service builds on: `LeaseKeeper` (keys that live as long as this process) and
`PrefixCache` (an in-memory copy of a key prefix, kept current by a watch).

`aetcd` is used because `etcd3` does not import with protobuf >= 4 (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import aetcd
import aetcd.exceptions
import aetcd.rpc
import aetcd.watcher
import grpc
from google.protobuf.message import DecodeError, Message

from .errors import Unavailable
from .grpc import channel_credentials
from .lifecycle import LoopComponent
from .pki import SERVER_NAME, Credentials

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)
StoreFailure = (aetcd.exceptions.ClientError, grpc.RpcError, asyncio.TimeoutError, OSError)


@dataclass(frozen=True, slots=True)
class WatchEvent:
    key: str
    value: bytes | None  # None when the key was deleted
    revision: int


@dataclass(frozen=True, slots=True)
class Fence:
    """A key this process created (a leader key) and the revision that created it: writes
    fenced on it succeed only while that very key still exists."""

    key: str
    revision: int


class FenceLost(Exception):
    """A fenced write found its fence key gone or created anew by another: nothing written."""


class StoreCompacted(Exception):
    """The watch asked for a revision etcd has already compacted away: reload and watch again."""


def client_target(endpoints: list[str]) -> tuple[str, int]:
    """aetcd takes one host and port; several IPv4 endpoints go through gRPC's ipv4: resolver."""
    if not endpoints:
        raise ValueError("no etcd endpoint given")
    host, _, port = endpoints[-1].rpartition(":")
    if len(endpoints) == 1:
        return host, int(port)
    return "ipv4:" + ",".join([*endpoints[:-1], host]), int(port)


class TlsClient(aetcd.Client):
    """aetcd opens only plaintext channels; this one presents the node's certificate and
    trusts only the mesh's CA (etcd takes the certificate's CN as the user name)."""

    def __init__(self, credentials: Credentials, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._credentials = credentials

    async def connect(self) -> None:
        if self._connected.is_set():
            return
        if self._is_connecting:
            await asyncio.wait_for(self._connected.wait(), self._connect_wait_timeout)
            return
        try:
            self._is_connecting = True
            options = [*self._options.items(), ("grpc.ssl_target_name_override", SERVER_NAME)]
            self.channel = aetcd.rpc.secure_channel(
                f"{self._host}:{self._port}", channel_credentials(self._credentials), options
            )
            self.kvstub = aetcd.rpc.KVStub(self.channel)
            self.clusterstub = aetcd.rpc.ClusterStub(self.channel)
            self.leasestub = aetcd.rpc.LeaseStub(self.channel)
            self.maintenancestub = aetcd.rpc.MaintenanceStub(self.channel)
            self._watcher = aetcd.watcher.Watcher(
                aetcd.rpc.WatchStub(self.channel), timeout=self._timeout, metadata=None
            )
            self._connected.set()
        finally:
            self._is_connecting = False


class EtcdStore:
    def __init__(
        self, client: aetcd.Client, *, reachable: bool = True, endpoints: list[str] | None = None
    ) -> None:
        self._client = client
        self.reachable_at_start = reachable
        self.endpoints = endpoints or []

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        endpoints: list[str],
        *,
        wait_s: float | None = None,
        rpc_timeout_s: int = 5,
        required: bool = True,
        credentials: Credentials | None = None,
    ) -> AsyncIterator[EtcdStore]:
        """A connected store, over mutual TLS given this node's `credentials`. Unreachable
        for `wait_s` (15 s, or 2 s when not required): Unavailable, unless not `required`,
        when the store is handed out anyway and every call fails until etcd is back."""
        if wait_s is None:
            wait_s = 15.0 if required else 2.0
        host, port = client_target(endpoints)
        client = (
            aetcd.Client(host=host, port=port, timeout=rpc_timeout_s)
            if credentials is None
            else TlsClient(credentials, host=host, port=port, timeout=rpc_timeout_s)
        )
        reachable = True
        try:
            try:
                await _wait_until_reachable(client, endpoints, wait_s)
            except Unavailable as exc:
                if required:
                    raise
                reachable = False
                logger.warning("%s; starting without it, retrying in the background", exc.message)
            yield cls(client, reachable=reachable, endpoints=endpoints)
        finally:
            await client.close()

    async def wait_reachable(self, wait_s: float) -> None:
        """Until etcd answers again (after it restarted), or Unavailable after `wait_s`."""
        await _wait_until_reachable(self._client, self.endpoints, wait_s)

    async def put(self, key: str, value: Message | bytes, *, lease: int | None = None) -> int:
        data = value if isinstance(value, bytes) else value.SerializeToString()
        reply = await self._client.put(key.encode(), data, lease=lease or None)
        return int(reply.header.revision)

    async def get(self, key: str, cls: type[M]) -> M | None:
        reply = await self._client.get(key.encode())
        return None if reply is None else _decode(cls, key, reply.value)

    async def get_raw(self, key: str) -> tuple[bytes, int] | None:
        """The value and the lease id it hangs on."""
        reply = await self._client.get(key.encode())
        return None if reply is None else (reply.value, int(reply.lease))

    async def get_prefix(self, prefix: str, cls: type[M]) -> tuple[dict[str, M], int]:
        """Every key under the prefix, decoded, and the store revision they were read at."""
        reply = await self._client.get_prefix(prefix.encode())
        items: dict[str, M] = {}
        for kv in reply:
            message = _decode(cls, kv.key.decode(), kv.value)
            if message is not None:
                items[kv.key.decode()] = message
        return items, int(reply.header.revision)

    async def delete(self, key: str) -> bool:
        return bool(await self._client.delete(key.encode()))

    async def delete_prefix(self, prefix: str) -> int:
        return int((await self._client.delete_prefix(prefix.encode())).deleted)

    async def holder(self, key: str) -> tuple[bytes, int, int] | None:
        """The value, the lease id it hangs on, and the revision that created it."""
        reply = await self._client.get(key.encode())
        if reply is None:
            return None
        return reply.value, int(reply.lease), int(reply.create_revision)

    async def put_fenced(
        self, fence: Fence, key: str, value: Message, *, lease: int | None = None
    ) -> None:
        """Put only while the fence key is the one created at its revision: a writer that
        has lost it (its lease expired, another took it) writes nothing (FenceLost)."""
        tx = self._client.transactions
        await self._fenced(fence, tx.put(key.encode(), value.SerializeToString(), lease=lease))

    async def delete_fenced(self, fence: Fence, key: str) -> None:
        tx = self._client.transactions
        await self._fenced(fence, tx.delete(key.encode()))

    async def _fenced(self, fence: Fence, operation: Any) -> None:
        tx = self._client.transactions
        ok, _ = await self._client.transaction(
            compare=[tx.create(fence.key.encode()) == fence.revision],
            success=[operation],
            failure=[],
        )
        if not ok:
            raise FenceLost(f"{fence.key} is no longer ours (created at {fence.revision})")

    async def put_if_absent(self, key: str, value: bytes, *, lease: int | None = None) -> bool:
        tx = self._client.transactions
        ok, _ = await self._client.transaction(
            compare=[tx.create(key.encode()) == 0],
            success=[tx.put(key.encode(), value, lease=lease)],
            failure=[],
        )
        return bool(ok)

    async def replace_if_unchanged(self, key: str, old: bytes, new: bytes) -> bool:
        """Put `new` only while the key still holds `old` (a compare-and-swap)."""
        tx = self._client.transactions
        ok, _ = await self._client.transaction(
            compare=[tx.value(key.encode()) == old],
            success=[tx.put(key.encode(), new)],
            failure=[],
        )
        return bool(ok)

    async def grant_lease(self, ttl_s: int) -> int:
        lease = await self._client.lease(ttl_s)
        return int(lease.id)

    async def refresh_lease(self, lease_id: int) -> int:
        """Keep a lease alive; returns its remaining TTL, 0 when it has already expired."""
        reply = await self._client.refresh_lease(lease_id)
        return int(reply.TTL) if reply is not None else 0

    async def revoke_lease(self, lease_id: int) -> None:
        await self._client.revoke_lease(lease_id)

    async def watch_prefix(self, prefix: str, start_revision: int) -> AsyncIterator[WatchEvent]:
        """Events under the prefix from `start_revision` on. Connection errors are retried from
        the last revision seen, so no event is lost; a compacted revision raises StoreCompacted."""
        next_revision = start_revision
        delay = 0.1
        while True:
            try:
                watch = await self._create_watch(prefix, next_revision)
                try:
                    async for event in watch:
                        delay = 0.1
                        next_revision = int(event.kv.mod_revision) + 1
                        deleted = event.kind == aetcd.rtypes.EventKind.DELETE
                        yield WatchEvent(
                            event.kv.key.decode(),
                            None if deleted else event.kv.value,
                            next_revision - 1,
                        )
                finally:
                    _in_background(watch.cancel())  # the server's watcher goes too
            except aetcd.exceptions.RevisionCompactedError as exc:
                raise StoreCompacted(str(exc)) from exc
            except StoreFailure as exc:
                logger.warning(
                    "watch on %s broke (%s); resuming from revision %d", prefix, exc, next_revision
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _create_watch(self, prefix: str, revision: int) -> aetcd.rtypes.Watch:
        """aetcd creates watches one at a time under a lock and a condition; cancelled inside
        that, a caller can deadlock the next (a task stuck "cancelling" forever). So the
        creation runs to its end on its own, and a watch created for a cancelled caller is
        cancelled in turn."""
        creating = asyncio.ensure_future(
            self._client.watch_prefix(prefix.encode(), start_revision=revision)
        )
        try:
            return await asyncio.shield(creating)
        except asyncio.CancelledError:
            creating.add_done_callback(_cancel_created)
            raise


_background: set[asyncio.Future[Any]] = set()


def _in_background(work: Awaitable[Any]) -> None:
    """Runs `work` to its end whatever happens to the caller (kept referenced till then)."""
    task = asyncio.ensure_future(work)
    _background.add(task)
    task.add_done_callback(_background.discard)
    task.add_done_callback(lambda t: t.cancelled() or t.exception())  # never "not retrieved"


def _cancel_created(creating: asyncio.Future[aetcd.rtypes.Watch]) -> None:
    if not creating.cancelled() and creating.exception() is None:
        _in_background(creating.result().cancel())


async def _wait_until_reachable(client: aetcd.Client, endpoints: list[str], wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            await asyncio.wait_for(client.status(), timeout=2.0)
            return
        except StoreFailure as exc:
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"etcd at {','.join(endpoints)} is not reachable "
                    f"({exc or type(exc).__name__}); check the address or start etcd"
                ) from exc
            await asyncio.sleep(0.2)


def _decode(cls: type[M], key: str, data: bytes) -> M | None:
    message = cls()
    try:
        message.ParseFromString(data)
    except DecodeError:
        logger.warning("ignoring %s: its value is not a valid %s", key, cls.__name__)
        return None
    return message


class LeaseKeeper:
    """Owns this process's lease: keys published through it vanish when the process dies
    (the lease expires after its TTL) or stops (the lease is revoked). If the lease is lost
    anyway (etcd unreachable for longer than the TTL), a new one is granted, every owned key
    is written again, and `on_new_lease` hooks run. Started while etcd is away (`start` with
    required=False), it holds what is published until a lease can be had."""

    def __init__(self, store: EtcdStore, ttl_s: int) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._owned: dict[str, bytes] = {}
        self._stopped = asyncio.Event()
        self.lease_id = 0
        self.on_new_lease: list[Callable[[int], Awaitable[None]]] = []

    async def start(self, *, required: bool = True) -> int:
        """Grants the lease; with required=False, leaves that to `run` if etcd is away."""
        if not required and not self._store.reachable_at_start:
            return self.lease_id
        try:
            self.lease_id = await self._store.grant_lease(self._ttl_s)
        except StoreFailure as exc:
            if required:
                raise
            logger.warning("no lease yet (%s); keys are published once etcd answers", exc)
        return self.lease_id

    async def publish(self, key: str, value: Message) -> None:
        data = value.SerializeToString()
        self._owned[key] = data
        if self.lease_id:
            await self._store.put(key, data, lease=self.lease_id)

    async def withdraw(self, key: str) -> None:
        if self._owned.pop(key, None) is not None:
            await self._store.delete(key)

    async def run(self) -> None:
        interval = max(self._ttl_s / 3, 0.3)
        while not self._stopped.is_set():
            try:
                await asyncio.wait_for(self._stopped.wait(), timeout=interval)
                return
            except TimeoutError:
                pass
            try:
                if not self.lease_id or await self._store.refresh_lease(self.lease_id) <= 0:
                    await self._renew()
            except StoreFailure as exc:
                if self.lease_id:
                    logger.warning("lease %x keepalive failed: %s", self.lease_id, exc)
                else:
                    logger.warning("no lease yet: %s", exc)

    async def _renew(self) -> None:
        old = self.lease_id
        self.lease_id = await self._store.grant_lease(self._ttl_s)
        logger.warning(
            "lease %x expired; republishing %d keys under %x", old, len(self._owned), self.lease_id
        )
        for key, data in list(self._owned.items()):
            await self._store.put(key, data, lease=self.lease_id)
        for hook in self.on_new_lease:
            await hook(self.lease_id)

    async def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._owned.clear()
        if self.lease_id:
            try:
                await self._store.revoke_lease(self.lease_id)
            except StoreFailure as exc:
                logger.warning(
                    "could not revoke lease %x (%s); its keys expire with its TTL",
                    self.lease_id,
                    exc,
                )


class PrefixCache(LoopComponent, Generic[M]):
    """An in-memory copy of every key under a prefix, decoded, kept current by a watch.
    Readers use `items` (never a store round trip); listeners run after every change."""

    def __init__(self, store: EtcdStore, prefix: str, cls: type[M]) -> None:
        self._store = store
        self._prefix = prefix
        self._cls = cls
        self.items: dict[str, M] = {}
        self.ready = asyncio.Event()
        self.listeners: list[Callable[[], None]] = []

    async def loop(self) -> None:
        while True:
            revision = await self._load()
            try:
                async for event in self._store.watch_prefix(self._prefix, revision + 1):
                    self._apply(event)
            except StoreCompacted as exc:
                logger.info("reloading %s: %s", self._prefix, exc)

    async def _load(self) -> int:
        delay = 0.1
        while True:
            try:
                items, revision = await self._store.get_prefix(self._prefix, self._cls)
                break
            except StoreFailure as exc:
                logger.warning("loading %s failed (%s); retrying", self._prefix, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        self.items = items
        self.ready.set()
        self._notify()
        return revision

    def _apply(self, event: WatchEvent) -> None:
        if event.value is None:
            if event.key not in self.items:
                return
            self.items = {k: v for k, v in self.items.items() if k != event.key}
        else:
            message = _decode(self._cls, event.key, event.value)
            if message is None:
                return
            self.items = {**self.items, event.key: message}
        self._notify()

    def _notify(self) -> None:
        for listener in self.listeners:
            listener()


@dataclass(frozen=True)
class KeyRange:
    prefix: str
    write: bool  # read and write; else read only


class StoreAuth:
    """etcd's users and roles, for the mesh's authority (connected as etcd's root user).
    A node's etcd user is named like its certificate's CN, which is how etcd knows who a
    client certificate belongs to."""

    def __init__(self, store: EtcdStore) -> None:
        self._stub = aetcd.rpc.AuthStub(store._client.channel)
        self._timeout = 5

    async def enable(self) -> None:
        """Auth on (a no-op when it already is; etcd 3.4 has no AuthStatus to ask first)."""
        await self._stub.AuthEnable(aetcd.rpc.AuthEnableRequest(), timeout=self._timeout)

    async def define_role(self, name: str, ranges: list[KeyRange]) -> None:
        """The role with exactly these permissions (added, or completed if it exists)."""
        with contextlib.suppress(grpc.aio.AioRpcError):  # it already exists
            await self._stub.RoleAdd(aetcd.rpc.AuthRoleAddRequest(name=name), timeout=self._timeout)
        for item in ranges:
            permission = aetcd.rpc.Permission(
                permType=aetcd.rpc.Permission.READWRITE
                if item.write
                else aetcd.rpc.Permission.READ,
                key=item.prefix.encode(),
                range_end=_prefix_end(item.prefix.encode()),
            )
            await self._stub.RoleGrantPermission(
                aetcd.rpc.AuthRoleGrantPermissionRequest(name=name, perm=permission),
                timeout=self._timeout,
            )

    async def users(self) -> set[str]:
        reply = await self._stub.UserList(aetcd.rpc.AuthUserListRequest(), timeout=self._timeout)
        return set(reply.users)

    async def add_user(self, name: str, role: str) -> None:
        """A user that authenticates only by certificate (no password), holding `role`."""
        if name not in await self.users():
            await self._stub.UserAdd(
                aetcd.rpc.AuthUserAddRequest(
                    name=name, options=aetcd.rpc.UserAddOptions(no_password=True)
                ),
                timeout=self._timeout,
            )
        await self._stub.UserGrantRole(
            aetcd.rpc.AuthUserGrantRoleRequest(user=name, role=role), timeout=self._timeout
        )

    async def delete_user(self, name: str) -> bool:
        if name not in await self.users():
            return False
        await self._stub.UserDelete(
            aetcd.rpc.AuthUserDeleteRequest(name=name), timeout=self._timeout
        )
        return True


def _prefix_end(prefix: bytes) -> bytes:
    """etcd's range end for "every key starting with prefix"."""
    return prefix[:-1] + bytes([prefix[-1] + 1])
