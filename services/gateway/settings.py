from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from meshllm.core.config import BaseServiceSettings, Section


class ProxySettings(Section):
    max_attempts: int = Field(3, ge=1, description="replicas tried before the first byte")
    connect_timeout_s: float = Field(5.0, gt=0)
    first_byte_timeout_s: float = Field(
        600.0, gt=0, description="upstream headers and first byte (a whole non-streamed answer)"
    )
    body_timeout_s: float = Field(60.0, gt=0, description="the client's whole request body")
    max_body_bytes: int = Field(64 * 2**20, gt=0, description="larger request bodies get 413")
    retry_after_s: int = Field(5, ge=1, description="Retry-After on 503")
    suspect_for_s: float = Field(10.0, ge=0, description="rank a failed replica last this long")
    force_relay: bool = Field(False, description="go through the worker relay even on this node")


class GatewaySettings(BaseServiceSettings):
    http_port: int = Field(9337, description="the OpenAI-compatible API")
    console_port: int = Field(3131, description="console and management API; 0 = off")
    grpc_port: int = 0
    proxy: ProxySettings = Field(default_factory=ProxySettings)
    exposes_mesh_ports: ClassVar[bool] = False  # bind_host is the API's address

    @property
    def probe_url(self) -> str:  # the API answers the probes itself, on bind_host
        host = "127.0.0.1" if self.bind_host in ("0.0.0.0", "") else self.bind_host
        return f"http://{host}:{self.http_port}/readyz"
