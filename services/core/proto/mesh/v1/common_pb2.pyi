from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DeviceKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEVICE_KIND_UNSPECIFIED: _ClassVar[DeviceKind]
    DEVICE_KIND_CPU: _ClassVar[DeviceKind]
    DEVICE_KIND_CUDA: _ClassVar[DeviceKind]
    DEVICE_KIND_ROCM: _ClassVar[DeviceKind]
    DEVICE_KIND_VULKAN: _ClassVar[DeviceKind]

class InstanceState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INSTANCE_STATE_UNSPECIFIED: _ClassVar[InstanceState]
    INSTANCE_STATE_STARTING: _ClassVar[InstanceState]
    INSTANCE_STATE_LOADING: _ClassVar[InstanceState]
    INSTANCE_STATE_READY: _ClassVar[InstanceState]
    INSTANCE_STATE_FAILED: _ClassVar[InstanceState]
    INSTANCE_STATE_STOPPING: _ClassVar[InstanceState]
    INSTANCE_STATE_STOPPED: _ClassVar[InstanceState]

class ModelSourceKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_SOURCE_KIND_UNSPECIFIED: _ClassVar[ModelSourceKind]
    MODEL_SOURCE_KIND_PATH: _ClassVar[ModelSourceKind]
    MODEL_SOURCE_KIND_PYPI: _ClassVar[ModelSourceKind]
    MODEL_SOURCE_KIND_HUGGINGFACE: _ClassVar[ModelSourceKind]
    MODEL_SOURCE_KIND_URL: _ClassVar[ModelSourceKind]

class AssignmentRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ASSIGNMENT_ROLE_UNSPECIFIED: _ClassVar[AssignmentRole]
    ASSIGNMENT_ROLE_SOLO: _ClassVar[AssignmentRole]
    ASSIGNMENT_ROLE_HOST: _ClassVar[AssignmentRole]
    ASSIGNMENT_ROLE_PEER: _ClassVar[AssignmentRole]
    ASSIGNMENT_ROLE_SHARD: _ClassVar[AssignmentRole]
DEVICE_KIND_UNSPECIFIED: DeviceKind
DEVICE_KIND_CPU: DeviceKind
DEVICE_KIND_CUDA: DeviceKind
DEVICE_KIND_ROCM: DeviceKind
DEVICE_KIND_VULKAN: DeviceKind
INSTANCE_STATE_UNSPECIFIED: InstanceState
INSTANCE_STATE_STARTING: InstanceState
INSTANCE_STATE_LOADING: InstanceState
INSTANCE_STATE_READY: InstanceState
INSTANCE_STATE_FAILED: InstanceState
INSTANCE_STATE_STOPPING: InstanceState
INSTANCE_STATE_STOPPED: InstanceState
MODEL_SOURCE_KIND_UNSPECIFIED: ModelSourceKind
MODEL_SOURCE_KIND_PATH: ModelSourceKind
MODEL_SOURCE_KIND_PYPI: ModelSourceKind
MODEL_SOURCE_KIND_HUGGINGFACE: ModelSourceKind
MODEL_SOURCE_KIND_URL: ModelSourceKind
ASSIGNMENT_ROLE_UNSPECIFIED: AssignmentRole
ASSIGNMENT_ROLE_SOLO: AssignmentRole
ASSIGNMENT_ROLE_HOST: AssignmentRole
ASSIGNMENT_ROLE_PEER: AssignmentRole
ASSIGNMENT_ROLE_SHARD: AssignmentRole

class Device(_message.Message):
    __slots__ = ("id", "kind", "name", "uuid", "pci_bus_id", "index", "memory_total_bytes", "memory_free_bytes", "memory_budget_bytes", "memory_bandwidth_gbps")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    PCI_BUS_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BUDGET_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BANDWIDTH_GBPS_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: DeviceKind
    name: str
    uuid: str
    pci_bus_id: str
    index: int
    memory_total_bytes: int
    memory_free_bytes: int
    memory_budget_bytes: int
    memory_bandwidth_gbps: float
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[_Union[DeviceKind, str]] = ..., name: _Optional[str] = ..., uuid: _Optional[str] = ..., pci_bus_id: _Optional[str] = ..., index: _Optional[int] = ..., memory_total_bytes: _Optional[int] = ..., memory_free_bytes: _Optional[int] = ..., memory_budget_bytes: _Optional[int] = ..., memory_bandwidth_gbps: _Optional[float] = ...) -> None: ...

class Instance(_message.Message):
    __slots__ = ("id", "model", "assignment_id", "state", "port", "memory_bytes", "restart_count", "last_exit_code", "message", "rpc_load_bytes")
    ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENT_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    RESTART_COUNT_FIELD_NUMBER: _ClassVar[int]
    LAST_EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RPC_LOAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    id: str
    model: str
    assignment_id: str
    state: InstanceState
    port: int
    memory_bytes: int
    restart_count: int
    last_exit_code: int
    message: str
    rpc_load_bytes: int
    def __init__(self, id: _Optional[str] = ..., model: _Optional[str] = ..., assignment_id: _Optional[str] = ..., state: _Optional[_Union[InstanceState, str]] = ..., port: _Optional[int] = ..., memory_bytes: _Optional[int] = ..., restart_count: _Optional[int] = ..., last_exit_code: _Optional[int] = ..., message: _Optional[str] = ..., rpc_load_bytes: _Optional[int] = ...) -> None: ...

class WorkerRecord(_message.Message):
    __slots__ = ("node", "worker_id", "device", "grpc_address", "relay_url", "draining", "instances", "lease_id", "version", "started_unix", "rpc_version", "tunnel_address", "pins_models", "llama_build")
    NODE_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    GRPC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    RELAY_URL_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STARTED_UNIX_FIELD_NUMBER: _ClassVar[int]
    RPC_VERSION_FIELD_NUMBER: _ClassVar[int]
    TUNNEL_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PINS_MODELS_FIELD_NUMBER: _ClassVar[int]
    LLAMA_BUILD_FIELD_NUMBER: _ClassVar[int]
    node: str
    worker_id: str
    device: Device
    grpc_address: str
    relay_url: str
    draining: bool
    instances: _containers.RepeatedCompositeFieldContainer[Instance]
    lease_id: int
    version: str
    started_unix: int
    rpc_version: str
    tunnel_address: str
    pins_models: bool
    llama_build: str
    def __init__(self, node: _Optional[str] = ..., worker_id: _Optional[str] = ..., device: _Optional[_Union[Device, _Mapping]] = ..., grpc_address: _Optional[str] = ..., relay_url: _Optional[str] = ..., draining: _Optional[bool] = ..., instances: _Optional[_Iterable[_Union[Instance, _Mapping]]] = ..., lease_id: _Optional[int] = ..., version: _Optional[str] = ..., started_unix: _Optional[int] = ..., rpc_version: _Optional[str] = ..., tunnel_address: _Optional[str] = ..., pins_models: _Optional[bool] = ..., llama_build: _Optional[str] = ...) -> None: ...

class RttReport(_message.Message):
    __slots__ = ("node", "worker_id", "rtt_ms", "updated_unix")
    class RttMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NODE_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    RTT_MS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_UNIX_FIELD_NUMBER: _ClassVar[int]
    node: str
    worker_id: str
    rtt_ms: _containers.ScalarMap[str, float]
    updated_unix: int
    def __init__(self, node: _Optional[str] = ..., worker_id: _Optional[str] = ..., rtt_ms: _Optional[_Mapping[str, float]] = ..., updated_unix: _Optional[int] = ...) -> None: ...

class ServiceRecord(_message.Message):
    __slots__ = ("kind", "instance", "node", "grpc_address", "http_address", "version")
    KIND_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    GRPC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    HTTP_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    kind: str
    instance: str
    node: str
    grpc_address: str
    http_address: str
    version: str
    def __init__(self, kind: _Optional[str] = ..., instance: _Optional[str] = ..., node: _Optional[str] = ..., grpc_address: _Optional[str] = ..., http_address: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class ModelSource(_message.Message):
    __slots__ = ("kind", "path", "package", "member", "repo", "node", "url")
    KIND_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    PACKAGE_FIELD_NUMBER: _ClassVar[int]
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    REPO_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    kind: ModelSourceKind
    path: str
    package: str
    member: str
    repo: str
    node: str
    url: str
    def __init__(self, kind: _Optional[_Union[ModelSourceKind, str]] = ..., path: _Optional[str] = ..., package: _Optional[str] = ..., member: _Optional[str] = ..., repo: _Optional[str] = ..., node: _Optional[str] = ..., url: _Optional[str] = ...) -> None: ...

class ModelFacts(_message.Message):
    __slots__ = ("architecture", "display_name", "file_size_bytes", "block_count", "context_length", "embedding_length", "head_count", "head_count_kv", "feed_forward_length", "expert_count", "expert_used_count", "vocab_size", "file_type", "has_chat_template", "vision", "audio", "kv_bytes_per_token", "head_dim_k", "head_dim_v", "expert_tensor_bytes")
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    FILE_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    BLOCK_COUNT_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_LENGTH_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_LENGTH_FIELD_NUMBER: _ClassVar[int]
    HEAD_COUNT_FIELD_NUMBER: _ClassVar[int]
    HEAD_COUNT_KV_FIELD_NUMBER: _ClassVar[int]
    FEED_FORWARD_LENGTH_FIELD_NUMBER: _ClassVar[int]
    EXPERT_COUNT_FIELD_NUMBER: _ClassVar[int]
    EXPERT_USED_COUNT_FIELD_NUMBER: _ClassVar[int]
    VOCAB_SIZE_FIELD_NUMBER: _ClassVar[int]
    FILE_TYPE_FIELD_NUMBER: _ClassVar[int]
    HAS_CHAT_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    VISION_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    KV_BYTES_PER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    HEAD_DIM_K_FIELD_NUMBER: _ClassVar[int]
    HEAD_DIM_V_FIELD_NUMBER: _ClassVar[int]
    EXPERT_TENSOR_BYTES_FIELD_NUMBER: _ClassVar[int]
    architecture: str
    display_name: str
    file_size_bytes: int
    block_count: int
    context_length: int
    embedding_length: int
    head_count: int
    head_count_kv: int
    feed_forward_length: int
    expert_count: int
    expert_used_count: int
    vocab_size: int
    file_type: str
    has_chat_template: bool
    vision: bool
    audio: bool
    kv_bytes_per_token: int
    head_dim_k: int
    head_dim_v: int
    expert_tensor_bytes: int
    def __init__(self, architecture: _Optional[str] = ..., display_name: _Optional[str] = ..., file_size_bytes: _Optional[int] = ..., block_count: _Optional[int] = ..., context_length: _Optional[int] = ..., embedding_length: _Optional[int] = ..., head_count: _Optional[int] = ..., head_count_kv: _Optional[int] = ..., feed_forward_length: _Optional[int] = ..., expert_count: _Optional[int] = ..., expert_used_count: _Optional[int] = ..., vocab_size: _Optional[int] = ..., file_type: _Optional[str] = ..., has_chat_template: _Optional[bool] = ..., vision: _Optional[bool] = ..., audio: _Optional[bool] = ..., kv_bytes_per_token: _Optional[int] = ..., head_dim_k: _Optional[int] = ..., head_dim_v: _Optional[int] = ..., expert_tensor_bytes: _Optional[int] = ...) -> None: ...

class ExpertRanking(_message.Message):
    __slots__ = ("model", "method", "note", "layers", "ranked_unix", "node")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    RANKED_UNIX_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    model: str
    method: str
    note: str
    layers: _containers.RepeatedCompositeFieldContainer[LayerRanking]
    ranked_unix: int
    node: str
    def __init__(self, model: _Optional[str] = ..., method: _Optional[str] = ..., note: _Optional[str] = ..., layers: _Optional[_Iterable[_Union[LayerRanking, _Mapping]]] = ..., ranked_unix: _Optional[int] = ..., node: _Optional[str] = ...) -> None: ...

class LayerRanking(_message.Message):
    __slots__ = ("experts", "scores")
    EXPERTS_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    experts: _containers.RepeatedScalarFieldContainer[int]
    scores: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, experts: _Optional[_Iterable[int]] = ..., scores: _Optional[_Iterable[float]] = ...) -> None: ...

class CatalogEntry(_message.Message):
    __slots__ = ("name", "source", "facts", "registered_unix", "aliases", "projector", "draft")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    FACTS_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_UNIX_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    PROJECTOR_FIELD_NUMBER: _ClassVar[int]
    DRAFT_FIELD_NUMBER: _ClassVar[int]
    name: str
    source: ModelSource
    facts: ModelFacts
    registered_unix: int
    aliases: _containers.RepeatedScalarFieldContainer[str]
    projector: ModelSource
    draft: str
    def __init__(self, name: _Optional[str] = ..., source: _Optional[_Union[ModelSource, _Mapping]] = ..., facts: _Optional[_Union[ModelFacts, _Mapping]] = ..., registered_unix: _Optional[int] = ..., aliases: _Optional[_Iterable[str]] = ..., projector: _Optional[_Union[ModelSource, _Mapping]] = ..., draft: _Optional[str] = ...) -> None: ...

class ModelFile(_message.Message):
    __slots__ = ("model", "node", "path", "size_bytes")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    model: str
    node: str
    path: str
    size_bytes: int
    def __init__(self, model: _Optional[str] = ..., node: _Optional[str] = ..., path: _Optional[str] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class Demand(_message.Message):
    __slots__ = ("model", "origin", "pinned", "last_request_unix", "requests_per_minute", "context", "split", "worker_id")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    PINNED_FIELD_NUMBER: _ClassVar[int]
    LAST_REQUEST_UNIX_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    model: str
    origin: str
    pinned: bool
    last_request_unix: int
    requests_per_minute: float
    context: int
    split: bool
    worker_id: str
    def __init__(self, model: _Optional[str] = ..., origin: _Optional[str] = ..., pinned: _Optional[bool] = ..., last_request_unix: _Optional[int] = ..., requests_per_minute: _Optional[float] = ..., context: _Optional[int] = ..., split: _Optional[bool] = ..., worker_id: _Optional[str] = ...) -> None: ...

class LayerExperts(_message.Message):
    __slots__ = ("experts",)
    EXPERTS_FIELD_NUMBER: _ClassVar[int]
    experts: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, experts: _Optional[_Iterable[int]] = ...) -> None: ...

class ShardSpec(_message.Message):
    __slots__ = ("shard_id", "expert_count", "layers", "core", "plan")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERT_COUNT_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    CORE_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    shard_id: str
    expert_count: int
    layers: _containers.RepeatedCompositeFieldContainer[LayerExperts]
    core: int
    plan: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, shard_id: _Optional[str] = ..., expert_count: _Optional[int] = ..., layers: _Optional[_Iterable[_Union[LayerExperts, _Mapping]]] = ..., core: _Optional[int] = ..., plan: _Optional[_Iterable[str]] = ...) -> None: ...

class ShardRecord(_message.Message):
    __slots__ = ("model", "spec", "node", "size_bytes", "sha256", "passed", "ppl_ratio", "same_top", "mean_kld", "quality", "written_unix")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    PPL_RATIO_FIELD_NUMBER: _ClassVar[int]
    SAME_TOP_FIELD_NUMBER: _ClassVar[int]
    MEAN_KLD_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    WRITTEN_UNIX_FIELD_NUMBER: _ClassVar[int]
    model: str
    spec: ShardSpec
    node: str
    size_bytes: int
    sha256: str
    passed: bool
    ppl_ratio: float
    same_top: float
    mean_kld: float
    quality: str
    written_unix: int
    def __init__(self, model: _Optional[str] = ..., spec: _Optional[_Union[ShardSpec, _Mapping]] = ..., node: _Optional[str] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., passed: _Optional[bool] = ..., ppl_ratio: _Optional[float] = ..., same_top: _Optional[float] = ..., mean_kld: _Optional[float] = ..., quality: _Optional[str] = ..., written_unix: _Optional[int] = ...) -> None: ...

class PeerShare(_message.Message):
    __slots__ = ("node", "worker_id", "share", "memory_bytes", "assignment_id")
    NODE_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENT_ID_FIELD_NUMBER: _ClassVar[int]
    node: str
    worker_id: str
    share: float
    memory_bytes: int
    assignment_id: str
    def __init__(self, node: _Optional[str] = ..., worker_id: _Optional[str] = ..., share: _Optional[float] = ..., memory_bytes: _Optional[int] = ..., assignment_id: _Optional[str] = ...) -> None: ...

class Assignment(_message.Message):
    __slots__ = ("id", "model", "node", "worker_id", "role", "context", "memory_bytes", "reasons", "created_unix", "origin", "group_id", "peers", "share", "shard", "draft")
    ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    DRAFT_FIELD_NUMBER: _ClassVar[int]
    id: str
    model: str
    node: str
    worker_id: str
    role: AssignmentRole
    context: int
    memory_bytes: int
    reasons: _containers.RepeatedScalarFieldContainer[str]
    created_unix: int
    origin: str
    group_id: str
    peers: _containers.RepeatedCompositeFieldContainer[PeerShare]
    share: float
    shard: ShardSpec
    draft: str
    def __init__(self, id: _Optional[str] = ..., model: _Optional[str] = ..., node: _Optional[str] = ..., worker_id: _Optional[str] = ..., role: _Optional[_Union[AssignmentRole, str]] = ..., context: _Optional[int] = ..., memory_bytes: _Optional[int] = ..., reasons: _Optional[_Iterable[str]] = ..., created_unix: _Optional[int] = ..., origin: _Optional[str] = ..., group_id: _Optional[str] = ..., peers: _Optional[_Iterable[_Union[PeerShare, _Mapping]]] = ..., share: _Optional[float] = ..., shard: _Optional[_Union[ShardSpec, _Mapping]] = ..., draft: _Optional[str] = ...) -> None: ...

class PlacementStatus(_message.Message):
    __slots__ = ("model", "placed", "reasons", "updated_unix", "requests_per_minute", "last_request_unix", "pinned_replicas", "mesh_replicas", "replicas", "demand", "next")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PLACED_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_UNIX_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    LAST_REQUEST_UNIX_FIELD_NUMBER: _ClassVar[int]
    PINNED_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    MESH_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    DEMAND_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIELD_NUMBER: _ClassVar[int]
    model: str
    placed: bool
    reasons: _containers.RepeatedScalarFieldContainer[str]
    updated_unix: int
    requests_per_minute: float
    last_request_unix: int
    pinned_replicas: int
    mesh_replicas: int
    replicas: int
    demand: str
    next: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model: _Optional[str] = ..., placed: _Optional[bool] = ..., reasons: _Optional[_Iterable[str]] = ..., updated_unix: _Optional[int] = ..., requests_per_minute: _Optional[float] = ..., last_request_unix: _Optional[int] = ..., pinned_replicas: _Optional[int] = ..., mesh_replicas: _Optional[int] = ..., replicas: _Optional[int] = ..., demand: _Optional[str] = ..., next: _Optional[_Iterable[str]] = ...) -> None: ...

class Endpoint(_message.Message):
    __slots__ = ("model", "instance_id", "node", "worker_id", "local_url", "relay_url", "slots", "context")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    LOCAL_URL_FIELD_NUMBER: _ClassVar[int]
    RELAY_URL_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    model: str
    instance_id: str
    node: str
    worker_id: str
    local_url: str
    relay_url: str
    slots: int
    context: int
    def __init__(self, model: _Optional[str] = ..., instance_id: _Optional[str] = ..., node: _Optional[str] = ..., worker_id: _Optional[str] = ..., local_url: _Optional[str] = ..., relay_url: _Optional[str] = ..., slots: _Optional[int] = ..., context: _Optional[int] = ...) -> None: ...

class Member(_message.Message):
    __slots__ = ("node", "role", "serial", "issued_unix", "expires_unix", "invite_id")
    NODE_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    ISSUED_UNIX_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_UNIX_FIELD_NUMBER: _ClassVar[int]
    INVITE_ID_FIELD_NUMBER: _ClassVar[int]
    node: str
    role: str
    serial: str
    issued_unix: int
    expires_unix: int
    invite_id: str
    def __init__(self, node: _Optional[str] = ..., role: _Optional[str] = ..., serial: _Optional[str] = ..., issued_unix: _Optional[int] = ..., expires_unix: _Optional[int] = ..., invite_id: _Optional[str] = ...) -> None: ...

class Revocation(_message.Message):
    __slots__ = ("node", "serial", "revoked_unix")
    NODE_FIELD_NUMBER: _ClassVar[int]
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    REVOKED_UNIX_FIELD_NUMBER: _ClassVar[int]
    node: str
    serial: str
    revoked_unix: int
    def __init__(self, node: _Optional[str] = ..., serial: _Optional[str] = ..., revoked_unix: _Optional[int] = ...) -> None: ...

class Invite(_message.Message):
    __slots__ = ("id", "secret_sha256", "role", "expires_unix", "uses_left", "created_unix")
    ID_FIELD_NUMBER: _ClassVar[int]
    SECRET_SHA256_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_UNIX_FIELD_NUMBER: _ClassVar[int]
    USES_LEFT_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_FIELD_NUMBER: _ClassVar[int]
    id: str
    secret_sha256: bytes
    role: str
    expires_unix: int
    uses_left: int
    created_unix: int
    def __init__(self, id: _Optional[str] = ..., secret_sha256: _Optional[bytes] = ..., role: _Optional[str] = ..., expires_unix: _Optional[int] = ..., uses_left: _Optional[int] = ..., created_unix: _Optional[int] = ...) -> None: ...
