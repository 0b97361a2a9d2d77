"""The model files on this machine: which the mesh downloaded or made (mesh-managed: its
downloads, the expert shards a registry wrote, the shards and copies of models a worker
received) and which are the user's own (external: the model directory, files other tools put
in the Hugging Face cache), their sizes and when the mesh last used them; and which of the
mesh's may be deleted."""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from meshllm.registry.downloads import Manifest


@dataclass(frozen=True)
class ModelFile:
    path: str
    size: int
    managed: bool  # downloaded by the mesh: `models cleanup` may delete it
    origin: str  # where it came from ("hf:org/repo/file", "pypi:…", "models dir", "hub cache")
    last_used_unix: int  # 0: never used by the mesh
    downloaded_unix: int  # 0: not downloaded by the mesh

    @property
    def name(self) -> str:
        return Path(self.path).name.removesuffix(".gguf")


@dataclass(frozen=True)
class Derived:
    """A folder of files the mesh made from models (`<folder>/<model>/<file>.gguf`), each
    with its side files (`<file>.json`, `<file>.gguf.*`): a shard's record, a copy's version."""

    folder: Path
    origin: str  # "expert shard", "copy of a model"


def installed(
    models_dir: Path, cache_dir: Path, hub_cache: Path, derived: Iterable[Derived] = ()
) -> list[ModelFile]:
    """Every GGUF file the mesh knows of on this machine, by path."""
    manifest = Manifest(cache_dir)
    downloads = manifest.downloads()
    used = manifest.last_used()
    found: dict[str, ModelFile] = {}
    for d in downloads.values():
        if os.path.lexists(d.path):
            found[d.path] = ModelFile(
                d.path, _size(d.path), True, d.origin, used.get(d.path, 0), d.downloaded_unix
            )
    outside = [
        (_ggufs(models_dir, depth=1), "models dir", False),
        (_ggufs(cache_dir, depth=0), "mesh cache", True),
        (_ggufs(hub_cache, depth=8), "hub cache", False),
    ]
    for paths, origin, managed in outside:
        for path in paths:
            key = str(path)
            if key not in found:
                found[key] = ModelFile(key, _size(key), managed, origin, used.get(key, 0), 0)
    for kind in derived:
        for path in _ggufs(kind.folder, depth=1):
            found.setdefault(str(path), _derived(path, kind.origin, used.get(str(path), 0)))
    return sorted(found.values(), key=lambda f: (not f.managed, f.path))


def _derived(path: Path, origin: str, used: int) -> ModelFile:
    """Made here, so managed; last read when its atime says (at worst a day behind, under
    relatime), made when its mtime says."""
    try:
        st = path.stat()
    except OSError:
        return ModelFile(str(path), 0, True, origin, used, 0)
    model = unquote(path.parent.name)
    last_read = int(st.st_atime) if st.st_atime > st.st_mtime else 0
    return ModelFile(
        str(path), st.st_size, True, f"{origin} of {model}", max(used, last_read), int(st.st_mtime)
    )


def _ggufs(folder: Path, depth: int) -> Iterable[Path]:
    """GGUF files in the folder and in folders up to `depth` levels below it."""
    if not folder.is_dir():
        return []
    found = []
    for root, dirs, files in os.walk(folder):
        if len(Path(root).relative_to(folder).parts) >= depth:
            dirs.clear()
        dirs[:] = [d for d in dirs if d != "blobs" and not d.startswith(".")]
        found += [Path(root) / f for f in files if f.endswith(".gguf") and not f.startswith(".")]
    return found


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size  # a hub cache link: its blob's size
    except OSError:
        return 0


def unused(files: Iterable[ModelFile], now: float, unused_for_s: float) -> list[ModelFile]:
    """The mesh-managed files neither used nor downloaded within the last `unused_for_s`."""
    return [
        f
        for f in files
        if f.managed and now - max(f.last_used_unix, f.downloaded_unix) >= unused_for_s
    ]


def delete(file: ModelFile, cache_dir: Path) -> None:
    """A mesh-managed file, and for a hub cache link the blob it points to."""
    if not file.managed:
        raise ValueError(f"{file.path} is not the mesh's to delete")
    path = Path(file.path)
    blob = path.resolve() if path.is_symlink() else None
    for side in [path.with_suffix(".json"), *path.parent.glob(f"{glob.escape(path.name)}.*")]:
        side.unlink(missing_ok=True)  # a shard's record, a copy's version, a partial transfer
    path.unlink(missing_ok=True)
    if blob is not None:
        blob.unlink(missing_ok=True)
        for marker in blob.parent.glob(f".{blob.name}.*"):  # its checksum's mark
            marker.unlink(missing_ok=True)
    if path.parent != cache_dir:
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # its model's folder, once empty
    Manifest(cache_dir).forget(file.path)
