"""Which models a node without their file may run from a copy: a model registered from a
local path (the registry that holds it streams the file over, ReadModel), unless it has a
projector, which may be a path on the holder's node too. Fetchable models (built-in, hub,
URL) need no copy: any node's registry fetches them itself. One rule for placement, which
offers such a model to a device without the file, and the worker, which then copies it; and
one layout for the worker, which writes copies, and the registry beside it, which offers a
finished copy to the mesh like any file it holds."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from meshllm.core.proto.mesh.v1 import common_pb2 as pb


def runs_from_a_copy(entry: pb.CatalogEntry) -> bool:
    return entry.source.kind == pb.MODEL_SOURCE_KIND_PATH and not entry.HasField("projector")


COPIES = "copies"  # the copies folder, under a worker's llama cache


def copy_path(folder: Path, model: str) -> Path:
    """Where a node keeps its copy of `model`'s file, under its copies folder."""
    return folder / quote(model, safe="") / "model.gguf"
