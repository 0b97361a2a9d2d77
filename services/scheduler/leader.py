"""Leader election through an etcd key on this process's lease: whoever creates
/leader/scheduler acts; the others stand by and try again while it is held. The key vanishes
with the leader's lease (its TTL) when the leader dies, or at once when it stops."""

from __future__ import annotations

import asyncio
import logging

from meshllm.core import keys
from meshllm.core.store import EtcdStore, Fence, LeaseKeeper, StoreFailure

logger = logging.getLogger(__name__)


class LeaderElection:
    def __init__(
        self, store: EtcdStore, lease: LeaseKeeper, mesh: str, instance: str, interval_s: float
    ) -> None:
        self._store = store
        self._lease = lease
        self._key = keys.leader(mesh, "scheduler")
        self.instance = instance
        self._interval_s = interval_s
        self.is_leader = asyncio.Event()
        self.fence: Fence | None = None  # while leading: every write of the leader's hangs on it
        self.leader_name = ""
        self._stopped = asyncio.Event()

    async def run(self) -> None:
        while not self._stopped.is_set():
            try:
                await self._check()
            except StoreFailure as exc:
                logger.warning("leader check failed: %s", exc)
                self._lose("store unreachable")
            try:
                await asyncio.wait_for(self._stopped.wait(), timeout=self._interval_s)
            except TimeoutError:
                pass

    async def _check(self) -> None:
        lease_id = self._lease.lease_id
        if await self._store.put_if_absent(self._key, self.instance.encode(), lease=lease_id):
            logger.info("scheduler %s is now the leader", self.instance)
        current = await self._store.holder(self._key)
        holder = current[0].decode() if current else ""
        self.leader_name = holder
        if current is not None and holder == self.instance and current[1] == lease_id:
            self.fence = Fence(self._key, current[2])
            self.is_leader.set()
        else:
            self._lose(f"{holder or 'nobody'} holds the lead")

    def lost(self, why: str) -> None:
        """A fenced write failed: the lead is gone whatever the last check said."""
        self._lose(why)

    def _lose(self, why: str) -> None:
        self.fence = None
        if self.is_leader.is_set():
            logger.warning("scheduler %s lost the lead: %s", self.instance, why)
            self.is_leader.clear()

    async def stop(self) -> None:
        self._stopped.set()
        if self.is_leader.is_set():
            self.is_leader.clear()
            self.fence = None
            try:
                await self._store.delete(self._key)
            except StoreFailure as exc:
                logger.warning("could not hand over the lead: %s", exc)
