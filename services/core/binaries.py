"""Finding the llama.cpp binaries: configured path, then $MESH_LLAMA_BIN_DIR, then the build
cache that `make llama` fills, then PATH. The choice and where it came from are logged."""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from meshllm.core.errors import Unavailable

logger = logging.getLogger(__name__)
LLAMA_CPP_VERSION = "0.3.36"


@dataclass(frozen=True)
class Binary:
    path: str
    origin: str  # "config", "MESH_LLAMA_BIN_DIR", "build cache", "PATH"


def build_cache_dirs(backend: str | None = None) -> list[Path]:
    root = Path(os.environ.get("MESH_LLAMA_CACHE", Path.home() / ".cache/mesh-llm/llama.cpp"))
    backends = [backend] if backend else ["cuda", "rocm", "vulkan", "cpu"]
    return [root / f"{LLAMA_CPP_VERSION}-{b}" / "bin" for b in backends]


def find_binary(name: str, configured: str = "") -> Binary:
    if configured:
        if _is_executable(configured):
            return Binary(configured, "config")
        raise Unavailable(f"configured {name} '{configured}' is not an executable file")
    bin_dir = os.environ.get("MESH_LLAMA_BIN_DIR")
    if bin_dir and _is_executable(os.path.join(bin_dir, name)):
        return Binary(os.path.join(bin_dir, name), "MESH_LLAMA_BIN_DIR")
    for directory in build_cache_dirs():
        if _is_executable(str(directory / name)):
            return Binary(str(directory / name), "build cache")
    found = shutil.which(name)
    if found:
        return Binary(found, "PATH")
    raise Unavailable(
        f"{name} not found: run `make llama` to build it, or set MESH_LLAMA_BIN_DIR "
        f"to the folder that holds it"
    )


def find_companion(name: str, beside: str) -> Binary | None:
    """A binary of the same build as `beside` (its folder first, then the usual search), or
    None when there is none: e.g. ggml-rpc-server for the llama-server a worker runs."""
    sibling = os.path.join(os.path.dirname(beside), name)
    if _is_executable(sibling):
        return Binary(sibling, f"beside {os.path.basename(beside)}")
    try:
        return find_binary(name)
    except Unavailable:
        return None


def llama_tool(name: str) -> str | None:
    """A llama.cpp tool of the same build as the llama-server found (llama-imatrix,
    llama-perplexity), or None when there is none."""
    try:
        found = find_companion(name, find_binary("llama-server").path)
    except Unavailable:
        return None
    return found.path if found else None


def _is_executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def build_name(binary: str) -> str:
    """The llama.cpp build a binary belongs to, as `make llama` stamped it ("0.3.36 cuda"); ""
    for one built elsewhere."""
    stamp = Path(binary).resolve().parent.parent / "STAMP"
    try:
        return " ".join(stamp.read_text().split()[:2])
    except OSError:
        return ""
