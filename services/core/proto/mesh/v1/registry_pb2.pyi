from . import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RegisterModelRequest(_message.Message):
    __slots__ = ("path", "name", "alias", "mmproj", "draft")
    PATH_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    MMPROJ_FIELD_NUMBER: _ClassVar[int]
    DRAFT_FIELD_NUMBER: _ClassVar[int]
    path: str
    name: str
    alias: str
    mmproj: str
    draft: str
    def __init__(self, path: _Optional[str] = ..., name: _Optional[str] = ..., alias: _Optional[str] = ..., mmproj: _Optional[str] = ..., draft: _Optional[str] = ...) -> None: ...

class RegisterModelResponse(_message.Message):
    __slots__ = ("entry",)
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    entry: _common_pb2.CatalogEntry
    def __init__(self, entry: _Optional[_Union[_common_pb2.CatalogEntry, _Mapping]] = ...) -> None: ...

class InspectModelRequest(_message.Message):
    __slots__ = ("path",)
    PATH_FIELD_NUMBER: _ClassVar[int]
    path: str
    def __init__(self, path: _Optional[str] = ...) -> None: ...

class InspectModelResponse(_message.Message):
    __slots__ = ("facts",)
    FACTS_FIELD_NUMBER: _ClassVar[int]
    facts: _common_pb2.ModelFacts
    def __init__(self, facts: _Optional[_Union[_common_pb2.ModelFacts, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[_common_pb2.CatalogEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[_common_pb2.CatalogEntry, _Mapping]]] = ...) -> None: ...

class LocateModelRequest(_message.Message):
    __slots__ = ("model", "node")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    model: str
    node: str
    def __init__(self, model: _Optional[str] = ..., node: _Optional[str] = ...) -> None: ...

class LocateModelResponse(_message.Message):
    __slots__ = ("path", "facts", "projector_path")
    PATH_FIELD_NUMBER: _ClassVar[int]
    FACTS_FIELD_NUMBER: _ClassVar[int]
    PROJECTOR_PATH_FIELD_NUMBER: _ClassVar[int]
    path: str
    facts: _common_pb2.ModelFacts
    projector_path: str
    def __init__(self, path: _Optional[str] = ..., facts: _Optional[_Union[_common_pb2.ModelFacts, _Mapping]] = ..., projector_path: _Optional[str] = ...) -> None: ...

class PrepareShardRequest(_message.Message):
    __slots__ = ("model", "spec")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    model: str
    spec: _common_pb2.ShardSpec
    def __init__(self, model: _Optional[str] = ..., spec: _Optional[_Union[_common_pb2.ShardSpec, _Mapping]] = ...) -> None: ...

class ShardProgress(_message.Message):
    __slots__ = ("stage", "done", "total", "record", "path")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    stage: str
    done: int
    total: int
    record: _common_pb2.ShardRecord
    path: str
    def __init__(self, stage: _Optional[str] = ..., done: _Optional[int] = ..., total: _Optional[int] = ..., record: _Optional[_Union[_common_pb2.ShardRecord, _Mapping]] = ..., path: _Optional[str] = ...) -> None: ...

class ReadShardRequest(_message.Message):
    __slots__ = ("model", "shard_id", "offset")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    model: str
    shard_id: str
    offset: int
    def __init__(self, model: _Optional[str] = ..., shard_id: _Optional[str] = ..., offset: _Optional[int] = ...) -> None: ...

class ShardChunk(_message.Message):
    __slots__ = ("offset", "data", "size_bytes")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    offset: int
    data: bytes
    size_bytes: int
    def __init__(self, offset: _Optional[int] = ..., data: _Optional[bytes] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class ReadModelRequest(_message.Message):
    __slots__ = ("model", "offset")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    model: str
    offset: int
    def __init__(self, model: _Optional[str] = ..., offset: _Optional[int] = ...) -> None: ...

class ModelChunk(_message.Message):
    __slots__ = ("offset", "data", "size_bytes", "version")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    offset: int
    data: bytes
    size_bytes: int
    version: str
    def __init__(self, offset: _Optional[int] = ..., data: _Optional[bytes] = ..., size_bytes: _Optional[int] = ..., version: _Optional[str] = ...) -> None: ...
