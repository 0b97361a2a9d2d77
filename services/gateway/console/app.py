"""The console on :3131: the page (static files packaged with the gateway) and the management
API behind it, documented in docs/API.md.

    GET    /api/status          the whole mesh as this gateway sees it (schema.Status)
    GET    /api/events          the same, as server-sent events on every change
    GET    /api/invite          the invite token and join commands (loopback only)
    GET    /api/runtime/llama   this node's llama-servers: their slots and metrics
    POST   /api/models          {"model": NAME} — this node asks the mesh to serve it
    DELETE /api/models/NAME     withdraw that request
    POST   /v1/...              the inference API, through the same proxy as :9337

Everything is read from the gateway's watch-fed copies of the store; errors have the API's
one JSON shape."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from meshllm.core import keys
from meshllm.core.access import is_loopback
from meshllm.core.clients import RegistryClient, model_reference
from meshllm.core.errors import Forbidden, NotFound, excerpt
from meshllm.core.pki import Credentials
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.store import EtcdStore, LeaseKeeper, PrefixCache

from ..endpoints import EndpointTable
from ..metrics import routing_counts
from . import schema
from .events import StatusFeed
from .status import Here, MeshSnapshot, build_status

logger = logging.getLogger(__name__)
STATIC = Path(__file__).with_name("static")
CONSOLE_PIN = "console"  # the worker segment of this node's console requests' demand keys


class ModelRequest(BaseModel):
    model: str = Field(min_length=1, max_length=512, description="anything --model takes")


class ConsoleView:
    """The watch-fed copies the status reads, beside the routing table's."""

    def __init__(self, store: EtcdStore, mesh: str, table: EndpointTable) -> None:
        self.mesh = mesh
        self.table = table
        self.services = PrefixCache(store, keys.services(mesh), pb.ServiceRecord)
        self.placement = PrefixCache(store, keys.placements(mesh), pb.PlacementStatus)
        self.rtt = PrefixCache(store, keys.rtts(mesh), pb.RttReport)
        self.assignments = PrefixCache(store, keys.assignments(mesh), pb.Assignment)
        self.shards = PrefixCache(store, keys.shards(mesh), pb.ShardRecord)
        self.caches = [self.services, self.placement, self.rtt, self.assignments, self.shards]

    @property
    def watched(self) -> list[PrefixCache[Any]]:
        return [*self.caches, *self.table.caches]

    def snapshot(self) -> MeshSnapshot:
        t = self.table
        return MeshSnapshot(
            mesh_id=self.mesh,
            workers=t.workers.items.values(),
            services=self.services.items.values(),
            catalog=t.catalog.items.values(),
            endpoints=t.endpoints.items.values(),
            assignments=self.assignments.items.values(),
            placement=self.placement.items.values(),
            rtt=self.rtt.items.values(),
            shards=self.shards.items.values(),
            routing=[schema.Routing(model=m, **to_ints(c)) for m, c in routing_counts().items()],
        )


def to_ints(counts: dict[str, float]) -> dict[str, int]:
    return {k: int(v) for k, v in counts.items()}


def create_console(
    view: ConsoleView,
    here: Here,
    store: EtcdStore,
    lease: LeaseKeeper,
    credentials: Credentials | None,
    local: Callable[[], aiohttp.ClientSession],
    inference: object,
    page: bool = True,
) -> tuple[ConsoleApp, StatusFeed]:
    """The console app, and the feed to run beside it. `inference` is the gateway's own ASGI
    app: /v1/ requests go to it, so the console's chat takes the API's path."""
    from ..app import add_error_handlers

    api = FastAPI(title="Mesh LLM console", docs_url=None, redoc_url=None)
    add_error_handlers(api)
    events_here = Here(here.node, here.version, here.api_url, here.console_url)  # no token
    feed = StatusFeed(lambda: build_status(view.snapshot(), events_here))
    for cache in view.watched:
        cache.listeners.append(feed.changed)

    @api.get("/api/status", response_model=schema.Status)
    async def status(request: Request) -> schema.Status:
        return build_status(view.snapshot(), here if _from_loopback(request) else events_here)

    @api.get("/api/events")
    async def events() -> StreamingResponse:
        headers = {"cache-control": "no-cache", "x-accel-buffering": "no"}
        return StreamingResponse(feed.stream(), media_type="text/event-stream", headers=headers)

    @api.get("/api/invite")
    async def invite(request: Request) -> dict[str, str]:
        if not _from_loopback(request):
            raise Forbidden("the invite token is shown on the node's own machine only")
        if not here.invite_token:
            raise NotFound(
                "this node holds no invite: run `mesh-llm invite` on the node that started the mesh"
            )
        return {
            "token": here.invite_token,
            "client_token": here.client_invite_token,
            "join": f"mesh-llm serve --join {here.invite_token}",
            "client": f"mesh-llm client --join {here.client_invite_token}",
        }

    @api.get("/api/runtime/llama")
    async def runtime() -> list[dict[str, Any]]:
        own = [w for w in view.table.workers.items.values() if w.node == here.node]
        instances = [(w, i) for w in own for i in w.instances if i.port > 0]
        return await asyncio.gather(*(llama_runtime(local(), w, i) for w, i in instances))

    @api.post("/api/models", status_code=202)
    async def ask_for_model(body: ModelRequest) -> dict[str, str]:
        async with await RegistryClient.discover(store, view.mesh, here.node, credentials) as r:
            entry = await r.register(**model_reference(body.model))
        await lease.publish(
            keys.demand_entry(view.mesh, entry.name, here.node, CONSOLE_PIN),
            pb.Demand(model=entry.name, origin=here.node, pinned=True),
        )
        return {"model": entry.name, "state": "requested"}

    @api.delete("/api/models/{model:path}")
    async def withdraw_model(model: str) -> dict[str, str]:
        name = view.table.resolve(model)
        key = keys.demand_entry(view.mesh, name, here.node, CONSOLE_PIN)
        if await store.get(key, pb.Demand) is None:
            raise NotFound(
                f"this node has not asked for '{excerpt(name)}' from the console (a model "
                "given to serve --model or in config.toml stays while the node runs)",
                param="model",
            )
        await lease.withdraw(key)
        await store.delete(key)  # published by an earlier run of this gateway, if not by this
        return {"model": name, "state": "withdrawn"}

    if page:
        api.mount("/static", StaticFiles(directory=STATIC), name="static")

        @api.get("/", include_in_schema=False)
        async def index() -> FileResponse:
            return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})

    return ConsoleApp(api, inference), feed


class ConsoleApp:
    """/v1/ to the inference app, the rest to the console's own."""

    def __init__(self, console: FastAPI, inference: object) -> None:
        self.console = console
        self.inference = inference

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            await self.inference(scope, receive, send)  # type: ignore[operator]
            return
        await self.console(scope, receive, send)


def _from_loopback(request: Request) -> bool:
    return request.client is not None and is_loopback(request.client.host)


async def llama_runtime(
    http: aiohttp.ClientSession, worker: pb.WorkerRecord, instance: pb.Instance
) -> dict[str, Any]:
    """One llama-server's slots (busy or idle, context used) and exported metrics; an
    instance that does not answer (loading, stopping) has an `error` instead."""
    base = f"http://127.0.0.1:{instance.port}"
    found: dict[str, Any] = {
        "instance": instance.id,
        "model": instance.model,
        "worker": worker.worker_id,
        "slots": [],
        "metrics": {},
        "error": "",
    }
    try:
        async with http.get(f"{base}/slots", timeout=aiohttp.ClientTimeout(total=5)) as reply:
            if reply.status == 200:
                found["slots"] = [slot_view(s) for s in await reply.json()]
        async with http.get(f"{base}/metrics", timeout=aiohttp.ClientTimeout(total=5)) as reply:
            if reply.status == 200:
                found["metrics"] = parse_metrics(await reply.text())
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        found["error"] = f"not answering: {exc or type(exc).__name__}"
    return found


def slot_view(slot: dict[str, Any]) -> dict[str, Any]:
    decoded = slot.get("next_token") or [{}]
    if isinstance(decoded, dict):
        decoded = [decoded]
    used = int(slot.get("n_prompt_tokens") or 0) + int(decoded[0].get("n_decoded") or 0)
    return {
        "id": slot.get("id"),
        "busy": bool(slot.get("is_processing")),
        "context_size": slot.get("n_ctx"),
        "context_used": used if slot.get("is_processing") else 0,
    }


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text, unlabelled samples (what llama-server exports): name → value."""
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                values[name.replace("llamacpp:", "")] = float(value)
            except ValueError:
                continue
    return values
