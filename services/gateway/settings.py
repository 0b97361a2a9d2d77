from __future__ import annotations

from pydantic import Field, SecretStr

from meshllm.core.config import BaseServiceSettings, Section
from meshllm.core.errors import InvalidRequest

from .demand import TrafficSettings
from .guard import ApiPolicy, exposure_problem, read_keys
from .routing import RoutingSettings


class ProxySettings(Section):
    max_attempts: int = Field(3, ge=1, description="replicas tried before the first byte")
    connect_timeout_s: float = Field(5.0, gt=0)
    first_byte_timeout_s: float = Field(
        600.0, gt=0, description="upstream headers and first byte (a whole non-streamed answer)"
    )
    body_timeout_s: float = Field(60.0, gt=0, description="the client's whole request body")
    stream_idle_timeout_s: float = Field(
        120.0, gt=0, description="an answer that sends nothing for this long is cut (SSE error)"
    )
    max_body_bytes: int = Field(64 * 2**20, gt=0, description="larger request bodies get 413")
    retry_after_s: int = Field(5, ge=1, description="Retry-After on 503")
    force_relay: bool = Field(False, description="go through the worker relay even on this node")


class GatewaySettings(BaseServiceSettings):
    http_port: int = Field(9337, description="the OpenAI-compatible API")
    console_port: int = Field(3131, description="console and management API; 0 = off")
    grpc_port: int = 0
    proxy: ProxySettings = Field(default_factory=ProxySettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    traffic: TrafficSettings = Field(default_factory=TrafficSettings)
    api_keys: SecretStr = Field(
        SecretStr(""), description="comma-separated API keys; any one of them lets a client in"
    )
    api_keys_file: str = Field("", description="a file of API keys, one per line")
    allow_no_api_key: bool = Field(
        False, description="serve the API without keys on a non-loopback bind_host, on purpose"
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="web origins allowed to call the API from a browser"
    )
    headless: bool = Field(False, description="the console's API without its page")
    invite_token: SecretStr = Field(
        SecretStr(""), description="the invite for a node, shown on the console's own machine"
    )
    client_invite_token: SecretStr = Field(
        SecretStr(""), description="the invite for an API-only node, shown likewise"
    )

    @property
    def api_url(self) -> str:
        return f"http://{self._local_host}:{self.http_port}/v1"

    @property
    def console_url(self) -> str:
        return f"http://{self._local_host}:{self.console_port}" if self.console_port else ""

    @property
    def _local_host(self) -> str:
        return "127.0.0.1" if self.bind_host in ("0.0.0.0", "") else self.bind_host

    def check_startup(self) -> None:
        """The gateway's bind_host is the API's address: it needs keys beyond loopback."""
        self.api_policy()

    def api_policy(self) -> ApiPolicy:
        """The keys and origins; refuses an API open beyond loopback by accident."""
        keys = read_keys(self.api_keys.get_secret_value().split(","), self.api_keys_file)
        problem = exposure_problem(self.bind_host, bool(keys), self.allow_no_api_key)
        if problem is not None:
            raise InvalidRequest(problem)
        return ApiPolicy.create(keys, self.cors_origins)

    @property
    def probe_url(self) -> str:  # the API answers the probes itself, on bind_host
        return f"http://{self._local_host}:{self.http_port}/readyz"
