"""Expert shards made and handed out by the registry that holds a mixture's file: a node that
serves a shard never needs the full model.

`prepare` writes the shard a placement named (shards.py), hashes it, and measures it against
the full model (quality.py) before anything may serve it; the result is cached under
`<cache>/shards/<model>/<shard id>.gguf` with a record beside it, reused while the source file
is unchanged, and published under /shards/<model>/<shard id>, where placement reads the
verdict. One shard is made at a time: writing is disk-bound and measuring runs the model.
`read` streams a prepared shard that passed the gate, from any offset, so a transfer resumes
where it broke."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from google.protobuf import json_format

from meshllm.core import keys
from meshllm.core.binaries import llama_tool
from meshllm.core.digest import file_sha256
from meshllm.core.errors import InvalidRequest, NotFound, Refused, Unavailable
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.proto.mesh.v1 import registry_pb2 as rpb
from meshllm.core.shard_ids import is_shard_id, shard_id
from meshllm.core.store import EtcdStore

from .file_reads import chunks_of
from .quality import Perplexity, QualityError
from .settings import RegistrySettings
from .shards import ShardError, write_shard

logger = logging.getLogger(__name__)
Progress = Callable[[int, int], None]


def _signature(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


class ShardMaker:
    def __init__(
        self,
        settings: RegistrySettings,
        store: EtcdStore,
        perplexity: Callable[[], str | None] = lambda: llama_tool("llama-perplexity"),
    ) -> None:
        self._settings = settings
        self._store = store
        self._perplexity = perplexity
        self._root = settings.shard_path
        self._lock = asyncio.Lock()

    def _folder(self, model: str) -> Path:
        return self._root / quote(model, safe="")

    async def prepare(
        self, model: str, spec: pb.ShardSpec, source: Path
    ) -> AsyncIterator[rpb.ShardProgress]:
        layers = [list(layer.experts) for layer in spec.layers]
        if not layers or spec.shard_id != shard_id(model, layers):
            raise InvalidRequest("the shard id does not match its experts", param="spec")
        if self._lock.locked():
            yield rpb.ShardProgress(stage="queued")
        async with self._lock:
            folder = self._folder(model)
            path = folder / f"{spec.shard_id}.gguf"
            record = await asyncio.to_thread(self._cached, path, source)
            if record is None:
                async for step in self._make(model, spec, layers, source, path):
                    if isinstance(step, pb.ShardRecord):
                        record = step
                    else:
                        yield step
            assert record is not None
            record.written_unix = int(time.time())
            await self._store.put(keys.shard(self._settings.mesh_id, model, spec.shard_id), record)
        if not record.passed:
            raise Refused(f"the {spec.expert_count}-expert shard of {model} {record.quality}")
        yield rpb.ShardProgress(stage="ready", record=record, path=str(path))

    def _cached(self, path: Path, source: Path) -> pb.ShardRecord | None:
        meta = path.with_suffix(".json")
        with contextlib.suppress(OSError, ValueError, json_format.ParseError):
            saved = json.loads(meta.read_text())
            record = json_format.ParseDict(saved["record"], pb.ShardRecord())
            if saved["source"] == _signature(source) and path.stat().st_size == record.size_bytes:
                return record
        return None

    async def _make(
        self, model: str, spec: pb.ShardSpec, layers: list[list[int]], source: Path, path: Path
    ) -> AsyncIterator[rpb.ShardProgress | pb.ShardRecord]:
        binary = self._perplexity()
        if binary is None:
            raise Unavailable("no llama-perplexity beside llama-server: the quality gate can't run")
        label = f"the {spec.expert_count}-expert shard {spec.shard_id} of {model}"
        logger.info("writing %s", label)
        try:
            async for step in _with_progress("writing", write_shard, source, path, layers):
                if isinstance(step, rpb.ShardProgress):
                    yield step
        except ShardError as exc:
            raise InvalidRequest(str(exc), param="spec") from exc
        digest = ""
        async for step in _with_progress("hashing", file_sha256, path):
            if isinstance(step, rpb.ShardProgress):
                yield step
            else:
                digest = step
        yield rpb.ShardProgress(stage="measuring")
        gauge = Perplexity(binary, threads=self._settings.ranking_threads)
        try:
            verdict = await asyncio.to_thread(self._judge, gauge, source, path)
        except QualityError as exc:
            raise Unavailable(f"cannot measure {label}: {exc}") from exc
        logger.info("%s: %s", label, verdict.describe())
        record = pb.ShardRecord(
            model=model, spec=spec, node=self._settings.node, size_bytes=path.stat().st_size,
            sha256=digest, passed=verdict.passed, ppl_ratio=verdict.ppl_ratio,
            same_top=verdict.same_top, mean_kld=verdict.mean_kld, quality=verdict.describe(),
        )  # fmt: skip
        meta = {"source": _signature(source), "record": json_format.MessageToDict(record)}
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, path.with_suffix(".json"))
        yield record

    def _judge(self, gauge: Perplexity, source: Path, shard: Path) -> Any:
        """The full model's distributions are saved once per source file."""
        sig = _signature(source)
        base = shard.parent / f"full-{sig['size']}-{sig['mtime_ns']}.kld"
        if not base.is_file():
            gauge.save_base(source, base)
        return gauge.judge(
            shard, base, self._settings.shard_max_ppl_ratio, self._settings.shard_min_same_top
        )

    async def read(self, model: str, shard: str, offset: int) -> AsyncIterator[rpb.ShardChunk]:
        if not is_shard_id(shard):
            raise InvalidRequest("not a shard id", param="shard_id")
        path = self._folder(model) / f"{shard}.gguf"
        record = await asyncio.to_thread(self._saved_record, path)
        if record is None or not record.passed:
            raise NotFound(
                f"shard {shard} of {model} is not prepared on node {self._settings.node}"
            )
        size = record.size_bytes
        async for at, data in chunks_of(path, offset, size, f"shard {shard} of {model}"):
            yield rpb.ShardChunk(offset=at, data=data, size_bytes=size)

    def _saved_record(self, path: Path) -> pb.ShardRecord | None:
        with contextlib.suppress(OSError, ValueError, KeyError, json_format.ParseError):
            saved = json.loads(path.with_suffix(".json").read_text())
            return json_format.ParseDict(saved["record"], pb.ShardRecord())
        return None


async def _with_progress(
    stage: str, work: Callable[..., Any], *args: Any
) -> AsyncIterator[rpb.ShardProgress | Any]:
    """Runs `work(*args, progress)` in a thread, yielding a ShardProgress at every whole
    percent it reports, then its result."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[int, int]] = asyncio.Queue()

    def report(done: int, total: int) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, (done, total))

    task = asyncio.ensure_future(asyncio.to_thread(work, *args, report))
    shown = -1
    try:
        while not task.done() or not queue.empty():
            getter = asyncio.ensure_future(queue.get())
            await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                continue
            done, total = getter.result()
            percent = done * 100 // total if total else 100
            if percent != shown:
                shown = percent
                yield rpb.ShardProgress(stage=stage, done=done, total=total)
        yield task.result()
    finally:
        if not task.done():
            await asyncio.wait({task})
