"""gRPC plumbing shared by every service: a server with health checking and error mapping,
and the client-side mapping of status codes back to MeshError."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from .errors import MeshError, Unavailable, from_grpc

logger = logging.getLogger(__name__)


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """MeshError → its status code; anything else is a bug: logged with traceback, INTERNAL."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary
        method = handler_call_details.method

        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await inner(request, context)
            except MeshError as exc:
                await context.abort(exc.code, exc.message)
            except Exception:
                logger.exception("%s failed", method)
                await context.abort(grpc.StatusCode.INTERNAL, f"internal error in {method}")

        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def make_server(
    bind: str, register: Callable[[grpc.aio.Server], None]
) -> tuple[grpc.aio.Server, health.aio.HealthServicer, int]:
    """A grpc.aio server listening on `bind` ("host:port", port 0 = any) with the standard
    health service (SERVING once returned). Call inside the running loop."""
    server = grpc.aio.server(interceptors=[ErrorInterceptor()])
    register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port(bind)
    if port == 0:
        raise Unavailable(f"cannot listen for gRPC on {bind}: the port is taken or not allowed")
    return server, health_servicer, port


async def set_serving(health_servicer: health.aio.HealthServicer, serving: bool) -> None:
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    await health_servicer.set("", status)


def make_channel(address: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(address, options=[("grpc.enable_retries", 1)])


@contextmanager
def map_rpc_errors(what: str) -> Iterator[None]:
    """Raw AioRpcError never travels past a client call: it becomes the matching MeshError."""
    try:
        yield
    except grpc.aio.AioRpcError as exc:
        message = exc.details() or f"{what} failed ({exc.code().name})"
        raise from_grpc(exc.code(), message) from exc
