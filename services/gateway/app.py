"""The gateway's HTTP surface on :9337. Inference routes (POST /v1/chat/completions,
/v1/completions, /v1/embeddings) are served by raw ASGI straight into the proxy: no framework
work on the hot path. Everything else (GET /v1/models, probes, /metrics, errors) is FastAPI."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from meshllm.core.errors import InvalidRequest, MeshError, NotFound, excerpt, openai_body
from meshllm.core.probes import add_probe_routes
from meshllm.core.streaming import Receive, Scope, Send, send_json

from .endpoints import EndpointTable
from .proxy import ROUTES, Proxy


def models_listing(table: EndpointTable) -> dict[str, Any]:
    data = []
    for model, endpoints in sorted(table.served_models().items()):
        entry = table.entry(model)
        facts = entry.facts if entry is not None else None
        data.append(
            {
                "id": model,
                "object": "model",
                "created": entry.registered_unix if entry is not None else 0,
                "owned_by": "mesh-llm",
                "meshllm": {
                    "replicas": [
                        {
                            "node": e.node,
                            "instance": e.instance_id,
                            "worker": e.worker_id,
                            "context": e.context,
                        }
                        for e in endpoints
                    ],
                    "architecture": facts.architecture if facts else "",
                    "size_bytes": facts.file_size_bytes if facts else 0,
                    # images in chat messages go through its projector
                    "vision": entry is not None and entry.HasField("projector"),
                },
            }
        )
    return {"object": "list", "data": data}


def create_api(table: EndpointTable) -> FastAPI:
    api = FastAPI(title="Mesh LLM", docs_url=None, redoc_url=None)
    add_error_handlers(api)

    @api.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return models_listing(table)

    @api.get("/v1/models/{model:path}")
    async def get_model(model: str) -> dict[str, Any]:
        model = table.resolve(model)
        for item in models_listing(table)["data"]:
            if item["id"] == model:
                return item
        raise NotFound(
            f"model '{excerpt(model)}' is not served in this mesh",
            param="model",
            error_code="model_not_found",
        )

    add_probe_routes(api, lambda: None if table.ready else "loading endpoints from etcd")
    return api


def add_error_handlers(api: FastAPI) -> None:
    """Every error in the API's one JSON shape (OpenAI's), with its status."""

    @api.exception_handler(MeshError)
    async def mesh_error(request: Request, exc: MeshError) -> JSONResponse:
        return JSONResponse(openai_body(exc), status_code=exc.http_status)

    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            error: MeshError = NotFound(f"no route {request.method} {request.url.path}")
        elif exc.status_code == 405:
            error = InvalidRequest(f"{request.method} is not allowed on {request.url.path}")
        else:
            error = InvalidRequest(str(exc.detail))
        return JSONResponse(openai_body(error), status_code=exc.status_code)

    @api.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        error = MeshError("internal error; it has been logged")
        return JSONResponse(openai_body(error), status_code=500)

    @api.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(openai_body(InvalidRequest(str(exc))), status_code=400)


class GatewayApp:
    def __init__(self, proxy: Proxy, api: FastAPI) -> None:
        self.proxy = proxy
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"].rstrip("/")
            if path in ROUTES and scope["method"] == "POST":
                await self.proxy.handle(scope, receive, send, path)
                return
            if path in ROUTES:
                error = InvalidRequest(f"{scope['method']} is not allowed on {path}: use POST")
                await send_json(send, 405, openai_body(error), [("allow", "POST")])
                return
        await self.api(scope, receive, send)
