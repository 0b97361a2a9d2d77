"""The scheduler service: `python -m meshllm.scheduler` (settings from MESH_* variables)."""

from __future__ import annotations

from meshllm.core.proto.mesh.v1 import scheduler_pb2_grpc
from meshllm.core.service import ServiceContext, ServiceParts, service_main

from .leader import LeaderElection
from .planner import MeshView, Planner
from .servicer import SchedulerServicer
from .settings import SchedulerSettings


async def build(ctx: ServiceContext) -> ServiceParts:
    settings = ctx.settings
    assert isinstance(settings, SchedulerSettings)
    view = MeshView(ctx.store, settings.mesh_id)
    election = LeaderElection(
        ctx.store,
        ctx.lease,
        settings.mesh_id,
        ctx.instance,
        interval_s=max(settings.lease_ttl_s / 3, 0.3),
    )
    planner = Planner(
        ctx.store,
        ctx.lease,
        view,
        settings.mesh_id,
        election,
        settings.placement,
        settings.demand,
    )
    servicer = SchedulerServicer(view, election)

    def ready() -> str | None:
        waiting = [c for c in view.caches if not c.ready.is_set()]
        return "loading the mesh state from etcd" if waiting else None

    return ServiceParts(
        register=lambda s: scheduler_pb2_grpc.add_SchedulerServiceServicer_to_server(servicer, s),
        components=[*view.caches, election, planner],
        ready=ready,
    )


def cli() -> None:
    service_main("scheduler", SchedulerSettings, build)


if __name__ == "__main__":
    cli()
