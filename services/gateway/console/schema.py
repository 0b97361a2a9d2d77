"""What `/api/status` (and each `/api/events` message) says, as typed models: one naming style
(snake_case), plain words for states and roles (no protobuf enum names), sizes in bytes, times
in Unix seconds. docs/API.md describes every field; the schema test holds the two together."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

NodeRole = Literal["client", "standby", "loading", "serving"]
InstanceState = Literal["starting", "loading", "ready", "failed", "stopping", "stopped"]
ModelState = Literal["serving", "loading", "pending"]
PlacementKind = Literal["solo", "split", "shards"]
MemberRole = Literal["solo", "host", "peer", "shard"]
Backend = Literal["cpu", "cuda", "rocm", "vulkan", "unknown"]
Capability = Literal["chat", "vision", "experts"]


class Device(BaseModel):
    id: str  # the worker's id for it: "cpu0", or the GPU's UUID
    name: str
    backend: Backend
    stable_id: str  # uuid:…, pci:…; or cpu:0 / index:N, which are not pinnable
    pinnable: bool
    memory_total_bytes: int
    memory_budget_bytes: int  # what the mesh may use on it
    memory_reserved_bytes: int  # what the mesh's assignments on it take
    memory_used_bytes: int  # in use on the device, as its worker last saw it
    bandwidth_gbps: float | None  # measured by `mesh-llm gpu benchmark`; None = not measured


class Instance(BaseModel):
    id: str
    model: str
    state: InstanceState
    port: int  # its llama-server's loopback port on its node (0: none, an rpc-server's)
    memory_bytes: int
    restarts: int
    message: str  # why it failed, when it did


class Worker(BaseModel):
    id: str
    device: Device
    draining: bool
    standby: bool  # takes the mesh's replicas (pins no model of its node's own)
    instances: list[Instance]


class Node(BaseModel):
    id: str
    role: NodeRole
    version: str
    services: list[str]  # which of gateway, registry, scheduler run there
    workers: list[Worker]
    rtt_ms: float | None  # measured from this node; None = not measured (or this node)


class ShardQuality(BaseModel):
    passed: bool
    ppl_ratio: float  # its perplexity over the full model's
    same_top: float  # how often its top token is the full model's, 0..1
    verdict: str
    measured_on: str  # the node that wrote and measured it


class Member(BaseModel):
    """One part of a model's placement: a whole replica, a split's host or peer, a shard."""

    node: str
    worker: str
    role: MemberRole
    state: InstanceState | Literal["assigned"]  # "assigned": no process reported yet
    memory_bytes: int
    layer_share: float | None  # a split's host or peer: its part of the layers
    experts: int | None  # a shard: how many experts it holds in each layer
    expert_ids: list[list[int]] | None  # a shard: which, layer by layer
    quality: ShardQuality | None  # a shard: what the quality gate measured; None = not yet


class Placement(BaseModel):
    kind: PlacementKind
    group: str
    context: int
    members: list[Member]


class Demand(BaseModel):
    requests_per_minute: float
    last_request_unix: int
    pinned_replicas: int  # replicas nodes pin (serve --model, config.toml, the console)
    mesh_replicas: int  # replicas the mesh wants for its traffic
    verdict: str  # the demand policy's verdict, in words


class Model(BaseModel):
    id: str
    aliases: list[str]
    state: ModelState
    architecture: str
    size_bytes: int
    context_length: int  # what the model was trained for
    capabilities: list[Capability]
    replicas: int  # ready replicas
    placements: list[Placement]
    demand: Demand | None  # None: nobody has asked for it
    why: list[str]  # the scheduler's reasons: where it is, or why it waits
    next: list[str]  # replicas wanted but not placed yet, each with why


class Routing(BaseModel):
    """This gateway's counts for one model since it started."""

    model: str
    requests: int
    failures: int  # requests answered with a server error (5xx)
    retries: int  # attempts on a replica that failed before its first byte
    failovers: int  # requests answered by another replica after such a failure
    in_flight: int


class ThisNode(BaseModel):
    id: str
    role: NodeRole
    version: str
    llama_build: str  # the llama.cpp build its workers run; "" on a client
    api_url: str
    console_url: str
    addresses: list[str]  # where other nodes reach its workers
    invite_token: str  # to add a node (shown on the console's own machine only)


class Status(BaseModel):
    mesh_id: str
    this_node: ThisNode
    nodes: list[Node]
    models: list[Model]
    in_flight: int = Field(description="requests this gateway is serving now")
    routing: list[Routing]
    updated_unix: float
