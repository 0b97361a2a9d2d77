"""What this machine's model files are and when the mesh last used them.

`<cache_dir>/downloads.json` records each file the mesh downloaded (mesh-managed: a built-in
model, a Hugging Face file it fetched) and, for every model file the mesh served, when it
last did. `mesh-llm models installed` lists the files with it; `mesh-llm models cleanup`
deletes only the mesh-managed ones. Several processes (the CLI, the registry) update it:
each change is a locked read-modify-write, written to a temporary file and renamed."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Download:
    path: str
    origin: str  # "hf:org/repo/file.gguf", "pypi:package==version"
    size: int
    sha256: str
    downloaded_unix: int


class Manifest:
    def __init__(self, cache_dir: Path) -> None:
        self.path = cache_dir / "downloads.json"

    def downloads(self) -> dict[str, Download]:
        return {p: Download(**d) for p, d in self._read().get("downloads", {}).items()}

    def last_used(self) -> dict[str, int]:
        return dict(self._read().get("used", {}))

    def record(self, path: Path, origin: str, size: int, sha256: str = "") -> None:
        entry = Download(str(path), origin, size, sha256, int(time.time()))
        with self._change() as data:
            data.setdefault("downloads", {})[str(path)] = asdict(entry)

    def touch(self, path: Path) -> None:
        """The mesh served from this file now."""
        with self._change() as data:
            data.setdefault("used", {})[str(path)] = int(time.time())

    def forget(self, path: str) -> None:
        with self._change() as data:
            data.get("downloads", {}).pop(path, None)
            data.get("used", {}).pop(path, None)

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    @contextlib.contextmanager
    def _change(self) -> Iterator[dict[str, Any]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self._read()
            yield data
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".downloads.")
            with os.fdopen(fd, "w") as out:
                json.dump(data, out, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
