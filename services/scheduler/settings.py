from __future__ import annotations

from pydantic import Field

from meshllm.core.config import BaseServiceSettings, Section


class PlacementSettings(Section):
    default_context: int = Field(4096, ge=256, description="context when a model asks for none")
    headroom_bytes: int = Field(128 * 2**20, ge=0, description="compute buffers etc., per model")
    headroom_fraction: float = Field(0.10, ge=0, description="extra share of the weights")
    settle_s: float = Field(0.05, ge=0, description="batch store changes before planning")
    min_interval_s: float = Field(
        0.25, ge=0, description="at most one plan this often; changes meanwhile wait for it"
    )


class DemandSettings(Section):
    """When traffic asks for more (or fewer) replicas of a model: see scheduler/demand.py."""

    busy_rpm: float = Field(
        20.0, gt=0, description="requests per minute per replica from which a model is hot"
    )
    hot_factor: float = Field(
        3.0, ge=1, description="hot also means this many times the coolest model's load"
    )
    dwell_s: float = Field(60.0, ge=0, description="no change to a model sooner after the last")
    max_replicas: int = Field(8, ge=1, description="replicas of one model, at most")


class SchedulerSettings(BaseServiceSettings):
    grpc_port: int = 9360
    http_port: int = 9361
    placement: PlacementSettings = Field(default_factory=PlacementSettings)
    demand: DemandSettings = Field(default_factory=DemandSettings)
