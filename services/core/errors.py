"""The error tree shared by every service, and its mapping to gRPC codes and HTTP statuses.

    MeshError
    ├── NotFound            NOT_FOUND           404  model, worker or instance unknown
    ├── Unavailable         UNAVAILABLE         503  no ready replica, draining, store down
    ├── Unauthorized        UNAUTHENTICATED     401  no or wrong credentials
    ├── Forbidden           PERMISSION_DENIED   403  credentials that may not do this
    ├── InvalidRequest      INVALID_ARGUMENT    400  bad input: body, flag, file
    │   ├── RequestTimeout  INVALID_ARGUMENT    408  the client took too long to send
    │   └── PayloadTooLarge INVALID_ARGUMENT    413  body (or 431: headers) over the limit
    ├── CapacityExhausted   RESOURCE_EXHAUSTED  503  nothing fits; carries placement reasons
    ├── UpstreamError       UNAVAILABLE         502  llama-server failed or closed
    └── UpstreamTimeout     DEADLINE_EXCEEDED   504

Exceptions are mapped once, at boundaries: the gRPC server interceptor (core/grpc.py) aborts
with the code, the client wrapper maps a status back to the class, and the gateway renders
the OpenAI error shape.
"""

from __future__ import annotations

from typing import ClassVar

import grpc


class MeshError(Exception):
    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL
    http_status: int = 500  # the class's status; an instance may carry a more precise one
    openai_type: str = "server_error"
    default_code: ClassVar[str] = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        error_code: str | None = None,
        http_status: int | None = None,
        openai_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.error_code = error_code or self.default_code
        self.http_status = http_status or type(self).http_status
        self.openai_type = openai_type or type(self).openai_type


class NotFound(MeshError):
    code = grpc.StatusCode.NOT_FOUND
    http_status = 404
    openai_type = "invalid_request_error"
    default_code = "not_found"


class Unauthorized(MeshError):
    code = grpc.StatusCode.UNAUTHENTICATED
    http_status = 401
    openai_type = "invalid_request_error"
    default_code = "invalid_api_key"


class Forbidden(MeshError):
    code = grpc.StatusCode.PERMISSION_DENIED
    http_status = 403
    openai_type = "invalid_request_error"
    default_code = "forbidden"


class Unavailable(MeshError):
    code = grpc.StatusCode.UNAVAILABLE
    http_status = 503
    openai_type = "service_unavailable"
    default_code = "unavailable"


class PortTaken(Unavailable):
    """A port this process was told to listen on is held by another."""

    default_code = "port_taken"


class InvalidRequest(MeshError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400
    openai_type = "invalid_request_error"
    default_code = "invalid_request"


class Refused(MeshError):
    """The request was understood but the mesh will not do it as things stand (an expert
    shard that failed the quality gate)."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    http_status = 409
    openai_type = "invalid_request_error"
    default_code = "refused"


class RequestTimeout(InvalidRequest):
    http_status = 408
    default_code = "request_timeout"


class PayloadTooLarge(InvalidRequest):
    http_status = 413
    default_code = "request_too_large"


class CapacityExhausted(MeshError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 503
    openai_type = "service_unavailable"
    default_code = "capacity_exhausted"

    def __init__(self, message: str, *, reasons: list[str] | None = None) -> None:
        super().__init__(message, error_code="capacity_exhausted")
        self.reasons = reasons or []


class UpstreamError(MeshError):
    code = grpc.StatusCode.UNAVAILABLE
    http_status = 502
    openai_type = "server_error"
    default_code = "upstream_error"


class UpstreamTimeout(MeshError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    http_status = 504
    openai_type = "server_error"
    default_code = "upstream_timeout"


_BY_CODE: dict[grpc.StatusCode, type[MeshError]] = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequest,
    grpc.StatusCode.RESOURCE_EXHAUSTED: CapacityExhausted,
    grpc.StatusCode.DEADLINE_EXCEEDED: UpstreamTimeout,
    grpc.StatusCode.UNAUTHENTICATED: Unauthorized,
    grpc.StatusCode.PERMISSION_DENIED: Forbidden,
    grpc.StatusCode.FAILED_PRECONDITION: Refused,
}


def from_grpc(code: grpc.StatusCode, message: str) -> MeshError:
    return _BY_CODE.get(code, MeshError)(message)


def excerpt(value: object, limit: int = 80) -> str:
    """Client input quoted in an error message: printable, and cut to `limit` characters."""
    text = value if isinstance(value, str) else repr(value)
    text = text.encode("unicode_escape").decode() if not text.isprintable() else text
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def openai_body(error: MeshError) -> dict[str, object]:
    return {
        "error": {
            "message": error.message,
            "type": error.openai_type,
            "param": error.param,
            "code": error.error_code,
        }
    }
