"""Who may use the API: API keys and cross-origin rules, in front of everything the gateway
serves (`ApiGuard`, an ASGI wrapper).

- **Keys**: when keys are configured, `/v1/...`, `/metrics` and the console's `/api/...` need
  one, as `Authorization: Bearer <key>` (OpenAI's clients) or `x-api-key: <key>`
  (Anthropic's); otherwise 401 in OpenAI's shape. Probes (`/healthz`, `/readyz`) stay open.
  Keys are compared as SHA-256 digests in constant time, and never logged.
- **Origins**: a request a browser marks with an `Origin` other than the gateway's own is
  refused (403) unless that origin was allowed (`cors_origins`), preflights included; allowed
  origins get CORS headers. Refusing — rather than only withholding CORS headers — matters
  because a page can send a "simple" cross-site POST without a preflight and make the mesh
  generate even if it cannot read the answer. Upstream CORS headers never pass through.
- **Exposure** (`exposure_problem`): without keys the API may listen only on loopback, unless
  the operator says explicitly that it should be open.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from meshllm.core.access import is_loopback
from meshllm.core.errors import Forbidden, InvalidRequest, MeshError, Unauthorized, openai_body
from meshllm.core.streaming import Receive, Scope, Send, request_headers, send_json

KEYED_PREFIXES = ("/v1/", "/metrics", "/api/")
ALLOWED_METHODS = "GET, POST, DELETE, OPTIONS"
ALLOWED_HEADERS = "authorization, content-type, x-api-key, x-request-id, x-session-id"


def exposure_problem(host: str, has_keys: bool, open_ok: bool) -> str | None:
    """Why the API may not listen on `host` as configured; None when it may."""
    if has_keys or open_ok or is_loopback(host):
        return None
    return (
        f"the API would listen on {host} without API keys: give --api-key or --api-keys-file, "
        "or pass --no-api-key to serve it open on purpose"
    )


def read_keys(values: Iterable[str], keys_file: str = "") -> tuple[str, ...]:
    """Keys given directly and one per line in `keys_file` ('#' starts a comment)."""
    keys = [v.strip() for v in values if v.strip()]
    if keys_file:
        try:
            lines = Path(keys_file).expanduser().read_text().splitlines()
        except OSError as exc:
            raise InvalidRequest(
                f"cannot read the API keys file {keys_file}: {exc.strerror or exc}"
            ) from exc
        keys += [line.split("#", 1)[0].strip() for line in lines]
    return tuple(k for k in keys if k)


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


@dataclass(frozen=True)
class ApiPolicy:
    key_digests: tuple[bytes, ...] = ()
    cors_origins: frozenset[str] = frozenset()

    @classmethod
    def create(cls, keys: Iterable[str] = (), cors_origins: Iterable[str] = ()) -> ApiPolicy:
        return cls(tuple(_digest(k) for k in keys), frozenset(cors_origins))

    def key_problem(self, path: str, headers: dict[str, str]) -> MeshError | None:
        if not self.key_digests or not path.startswith(KEYED_PREFIXES):
            return None
        given = presented_key(headers)
        if not given:
            return Unauthorized(
                "this API needs a key: send it as 'Authorization: Bearer <key>' "
                "(or 'x-api-key: <key>')"
            )
        digest = _digest(given)
        matched = False
        for known in self.key_digests:  # every key compared: no early exit to time
            matched |= hmac.compare_digest(digest, known)
        return None if matched else Unauthorized("the API key is not valid for this mesh")

    def origin_allowed(self, origin: str, host: str) -> bool:
        if origin in self.cors_origins or "*" in self.cors_origins:
            return True
        parts = urlsplit(origin)
        return bool(parts.netloc) and parts.netloc == host  # the gateway's own page


def presented_key(headers: dict[str, str]) -> str:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key", "").strip()


class ApiGuard:
    def __init__(self, app: object, policy: ApiPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)  # type: ignore[operator]
            return
        headers = request_headers(scope)
        origin = headers.get("origin", "")
        if origin and not self.policy.origin_allowed(origin, headers.get("host", "")):
            error = Forbidden(
                "cross-origin requests are not allowed from this origin "
                "(the operator can allow it with --cors-origin)"
            )
            await send_json(send, error.http_status, openai_body(error))
            return
        cors = _cors_headers(origin) if origin else []
        if origin and scope["method"] == "OPTIONS":
            await send({"type": "http.response.start", "status": 204, "headers": cors})
            await send({"type": "http.response.body", "body": b""})
            return
        problem = self.policy.key_problem(scope["path"], headers)
        if problem is not None:
            extra = [("www-authenticate", 'Bearer realm="mesh-llm"')]
            await send_json(send, problem.http_status, openai_body(problem), extra)
            return
        await self.app(scope, receive, _with_headers(send, cors) if cors else send)  # type: ignore[operator]


def _cors_headers(origin: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-allow-methods", ALLOWED_METHODS.encode()),
        (b"access-control-allow-headers", ALLOWED_HEADERS.encode()),
        (b"access-control-expose-headers", b"x-request-id, x-mesh-node"),
        (b"vary", b"Origin"),
    ]


def _with_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    async def sending(message: dict) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return sending
