"""`/api/events`: the status as server-sent events. Driven by the store's watches — every
watch-fed copy the status reads calls `changed()` — never by a polling loop: a change marks the
feed dirty, and one task builds the status at most once per `coalesce_s` and hands it to every
open stream. A stream gets the full status first (so a reconnecting page is whole again at
once), then each new one, and a comment line every `keepalive_s` so proxies and the browser
keep the connection open. A slow reader only ever has the newest status waiting: statuses are
whole, so one it missed is not worth sending."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from meshllm.core.lifecycle import LoopComponent

from .schema import Status

logger = logging.getLogger(__name__)


class StatusFeed(LoopComponent):
    def __init__(
        self, build: Callable[[], Status], coalesce_s: float = 0.1, keepalive_s: float = 15.0
    ) -> None:
        self._build = build
        self._coalesce_s = coalesce_s
        self.keepalive_s = keepalive_s
        self._dirty = asyncio.Event()
        self._streams: set[asyncio.Queue[bytes]] = set()
        self.latest: bytes = b""

    def changed(self) -> None:
        """A watch-fed copy changed (called from its listener, on the event loop)."""
        self._dirty.set()

    async def loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                self.latest = event(self._build())
            except Exception:  # a status that cannot be built now is built at the next change
                logger.exception("building the status for /api/events failed")
                continue
            for queue in self._streams:
                _replace(queue, self.latest)
            await asyncio.sleep(self._coalesce_s)

    async def stream(self) -> AsyncIterator[bytes]:
        """One client's events: the status now, then every new one, with keep-alives."""
        queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1)
        self._streams.add(queue)
        try:
            yield event(self._build())
            while True:
                try:
                    yield await asyncio.wait_for(queue.get(), timeout=self.keepalive_s)
                except TimeoutError:
                    yield b": keep-alive\n\n"
        finally:
            self._streams.discard(queue)

    @property
    def streams(self) -> int:
        return len(self._streams)


def event(status: Status) -> bytes:
    return b"event: status\ndata: " + status.model_dump_json().encode() + b"\n\n"


def _replace(queue: asyncio.Queue[bytes], item: bytes) -> None:
    with contextlib.suppress(asyncio.QueueEmpty):
        queue.get_nowait()
    queue.put_nowait(item)
