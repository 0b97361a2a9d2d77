from __future__ import annotations

import grpc

from meshllm.core.errors import NotFound, Unavailable
from meshllm.core.proto.mesh.v1 import worker_pb2 as wpb
from meshllm.core.proto.mesh.v1 import worker_pb2_grpc

from .agent import MANUAL_PREFIX, WorkerAgent, instance_message
from .supervisor import InstanceState


class WorkerServicer(worker_pb2_grpc.WorkerServiceServicer):
    def __init__(self, agent: WorkerAgent, load_timeout_s: float) -> None:
        self._agent = agent
        self._load_timeout_s = load_timeout_s

    async def GetStatus(
        self, request: wpb.GetStatusRequest, context: grpc.aio.ServicerContext
    ) -> wpb.GetStatusResponse:
        await self._agent.publish_record()
        return wpb.GetStatusResponse(worker=self._agent.record)

    async def LoadModel(
        self, request: wpb.LoadModelRequest, context: grpc.aio.ServicerContext
    ) -> wpb.LoadModelResponse:
        if self._agent.record.draining:
            raise Unavailable("this worker is draining")
        instance = await self._agent.start_instance(
            request.model, request.context, MANUAL_PREFIX + request.model
        )
        state = await instance.wait_settled(self._load_timeout_s)
        if state != InstanceState.READY:
            raise Unavailable(f"{request.model} did not start: {instance.message}")
        return wpb.LoadModelResponse(instance=instance_message(instance))

    async def UnloadModel(
        self, request: wpb.UnloadModelRequest, context: grpc.aio.ServicerContext
    ) -> wpb.UnloadModelResponse:
        supervisor = self._agent.supervisor
        assert supervisor is not None
        ids = [i for i, inst in supervisor.instances.items() if inst.spec.model == request.model]
        if not ids:
            raise NotFound(f"'{request.model}' is not loaded on this worker")
        for instance_id in ids:
            await supervisor.remove(instance_id)
        return wpb.UnloadModelResponse(stopped=len(ids))

    async def DrainWorker(
        self, request: wpb.DrainWorkerRequest, context: grpc.aio.ServicerContext
    ) -> wpb.DrainWorkerResponse:
        await self._agent.drain()
        return wpb.DrainWorkerResponse(worker=self._agent.record)
