from __future__ import annotations

import grpc

from meshllm.core.proto.mesh.v1 import scheduler_pb2 as spb
from meshllm.core.proto.mesh.v1 import scheduler_pb2_grpc

from .leader import LeaderElection
from .planner import MeshView


class SchedulerServicer(scheduler_pb2_grpc.SchedulerServiceServicer):
    def __init__(self, view: MeshView, election: LeaderElection) -> None:
        self._view = view
        self._election = election

    async def GetPlan(
        self, request: spb.GetPlanRequest, context: grpc.aio.ServicerContext
    ) -> spb.GetPlanResponse:
        return spb.GetPlanResponse(
            leader=self._election.is_leader.is_set(),
            leader_instance=self._election.leader_name,
            assignments=sorted(self._view.assignments.items.values(), key=lambda a: a.model),
            pending=[s for s in self._view.placement.items.values() if not s.placed],
        )

    async def ExplainPlacement(
        self, request: spb.ExplainPlacementRequest, context: grpc.aio.ServicerContext
    ) -> spb.ExplainPlacementResponse:
        status = next(
            (s for s in self._view.placement.items.values() if s.model == request.model), None
        )
        assignments = [a for a in self._view.assignments.items.values() if a.model == request.model]
        response = spb.ExplainPlacementResponse(
            assignments=assignments, shards=self._view.shard_records(request.model)
        )
        if status is not None:
            response.status.CopyFrom(status)
        else:
            response.status.model = request.model
            response.status.reasons.append("nobody has asked for this model")
        return response
