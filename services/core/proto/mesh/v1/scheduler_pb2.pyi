from . import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetPlanRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetPlanResponse(_message.Message):
    __slots__ = ("leader", "leader_instance", "assignments", "pending")
    LEADER_FIELD_NUMBER: _ClassVar[int]
    LEADER_INSTANCE_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    leader: bool
    leader_instance: str
    assignments: _containers.RepeatedCompositeFieldContainer[_common_pb2.Assignment]
    pending: _containers.RepeatedCompositeFieldContainer[_common_pb2.PlacementStatus]
    def __init__(self, leader: _Optional[bool] = ..., leader_instance: _Optional[str] = ..., assignments: _Optional[_Iterable[_Union[_common_pb2.Assignment, _Mapping]]] = ..., pending: _Optional[_Iterable[_Union[_common_pb2.PlacementStatus, _Mapping]]] = ...) -> None: ...

class ExplainPlacementRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class ExplainPlacementResponse(_message.Message):
    __slots__ = ("status", "assignments", "shards")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    status: _common_pb2.PlacementStatus
    assignments: _containers.RepeatedCompositeFieldContainer[_common_pb2.Assignment]
    shards: _containers.RepeatedCompositeFieldContainer[_common_pb2.ShardRecord]
    def __init__(self, status: _Optional[_Union[_common_pb2.PlacementStatus, _Mapping]] = ..., assignments: _Optional[_Iterable[_Union[_common_pb2.Assignment, _Mapping]]] = ..., shards: _Optional[_Iterable[_Union[_common_pb2.ShardRecord, _Mapping]]] = ...) -> None: ...
