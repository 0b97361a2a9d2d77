from __future__ import annotations

from pydantic import Field

from meshllm.core.config import BaseServiceSettings, Section


class PlacementSettings(Section):
    default_context: int = Field(4096, ge=256, description="context when a model asks for none")
    headroom_bytes: int = Field(128 * 2**20, ge=0, description="compute buffers etc., per model")
    headroom_fraction: float = Field(0.10, ge=0, description="extra share of the weights")
    settle_s: float = Field(0.05, ge=0, description="batch store changes before planning")


class SchedulerSettings(BaseServiceSettings):
    grpc_port: int = 9360
    http_port: int = 9361
    placement: PlacementSettings = Field(default_factory=PlacementSettings)
