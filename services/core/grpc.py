"""gRPC plumbing shared by every service: a server with health checking, error mapping and,
given the node's credentials, mutual TLS with the access policy of `access.py`; channels that
present the node's certificate; the client-side mapping of status codes back to MeshError."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Container, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from . import access
from .errors import MeshError, PortTaken, Unavailable, from_grpc
from .pki import SERVER_NAME, Credentials, Identity
from .ports import bindable

logger = logging.getLogger(__name__)


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """MeshError → its status code; anything else is a bug: logged with traceback, INTERNAL."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
                try:
                    return await inner(request, context)
                except Exception as exc:
                    await _abort(context, method, exc)

            return grpc.unary_unary_rpc_method_handler(
                guarded,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            inner_stream = handler.unary_stream

            async def guarded_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
                try:
                    async for item in inner_stream(request, context):
                        yield item
                except Exception as exc:
                    await _abort(context, method, exc)

            return grpc.unary_stream_rpc_method_handler(
                guarded_stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


async def _abort(context: grpc.aio.ServicerContext, method: str, exc: Exception) -> None:
    if isinstance(exc, grpc.aio.AbortError):  # the handler aborted the call itself
        raise exc
    if isinstance(exc, MeshError):
        await context.abort(exc.code, exc.message)
    logger.exception("%s failed", method, exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error in {method}")


class AccessInterceptor(grpc.aio.ServerInterceptor):
    """Every call's peer is checked against `access.refusal` before its handler runs."""

    def __init__(self, mesh_id: str, revoked: Container[int]) -> None:
        self._mesh_id = mesh_id
        self._revoked = revoked

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        allowed = access.roles_for(handler_call_details.method)
        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def checked(request: Any, context: grpc.aio.ServicerContext) -> Any:
                await self._check(context, allowed)
                return await inner(request, context)

            return grpc.unary_unary_rpc_method_handler(
                checked,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:  # the health service's Watch
            inner_stream = handler.unary_stream

            async def checked_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
                await self._check(context, allowed)
                async for item in inner_stream(request, context):
                    yield item

            return grpc.unary_stream_rpc_method_handler(
                checked_stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    async def _check(self, context: grpc.aio.ServicerContext, allowed: frozenset[str]) -> None:
        reason = access.refusal(
            peer_identity(context), mesh_id=self._mesh_id, allowed=allowed, revoked=self._revoked
        )
        if reason is not None:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, reason)


def peer_identity(context: grpc.aio.ServicerContext) -> Identity | None:
    certs = context.auth_context().get("x509_pem_cert")
    return access.cert_identity(certs[0]) if certs else None


def server_credentials(credentials: Credentials) -> grpc.ServerCredentials:
    ca, cert, key = credentials.read()
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=True
    )


def channel_credentials(credentials: Credentials) -> grpc.ChannelCredentials:
    ca, cert, key = credentials.read()
    return grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )


@dataclass(frozen=True)
class ServerSecurity:
    """What a server needs for mutual TLS: the node's credentials, the mesh its peers must
    belong to, and the live set of revoked certificate serials."""

    credentials: Credentials
    mesh_id: str
    revoked: Container[int]


def make_server(
    bind: str,
    register: Callable[[grpc.aio.Server], None],
    security: ServerSecurity | None = None,
) -> tuple[grpc.aio.Server, health.aio.HealthServicer, int]:
    """A grpc.aio server listening on `bind` ("host:port", port 0 = any) with the standard
    health service (SERVING once returned); with `security`, mutual TLS and the access policy
    (without, `access.check_exposure` must have allowed the bind). Call inside the loop."""
    interceptors: list[grpc.aio.ServerInterceptor] = [ErrorInterceptor()]
    if security is not None:
        interceptors.insert(0, AccessInterceptor(security.mesh_id, security.revoked))
    # grpc shares a port with any other SO_REUSEPORT socket by default: a taken port must fail
    server = grpc.aio.server(interceptors=interceptors, options=[("grpc.so_reuseport", 0)])
    register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    try:
        if security is None:
            port = server.add_insecure_port(bind)
        else:
            port = server.add_secure_port(bind, server_credentials(security.credentials))
    except RuntimeError:  # grpc's "Failed to bind"
        port = 0
    if port == 0:
        host, _, wanted = bind.rpartition(":")
        if not bindable(host.strip("[]"), int(wanted)):
            raise PortTaken(f"cannot listen for gRPC on {bind}: the port is taken")
        raise Unavailable(f"cannot listen for gRPC on {bind}: the address is not allowed")
    return server, health_servicer, port


async def set_serving(health_servicer: health.aio.HealthServicer, serving: bool) -> None:
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    await health_servicer.set("", status)


def make_channel(address: str, credentials: Credentials | None = None) -> grpc.aio.Channel:
    """A channel to another service; with this node's credentials, over mutual TLS (the
    server is checked for the mesh's CA and its shared name, not for an address)."""
    options = [("grpc.enable_retries", 1)]
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=options)
    options.append(("grpc.ssl_target_name_override", SERVER_NAME))
    return grpc.aio.secure_channel(address, channel_credentials(credentials), options=options)


@contextmanager
def map_rpc_errors(what: str) -> Iterator[None]:
    """Raw AioRpcError never travels past a client call: it becomes the matching MeshError."""
    try:
        yield
    except grpc.aio.AioRpcError as exc:
        message = exc.details() or f"{what} failed ({exc.code().name})"
        raise from_grpc(exc.code(), message) from exc
