"""The nodes running on this machine: each `serve` or `client` leaves a small file under
`$MESH_HOME/run/` (default ~/.mesh-llm) while it runs, so commands such as `mesh-llm invite`
find the node's credentials without being told where they are."""

from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

from meshllm.core.pki import write_private


def home() -> Path:
    return Path(os.environ.get("MESH_HOME", "~/.mesh-llm")).expanduser()


@dataclass(frozen=True)
class RunningNode:
    pid: int
    mesh_id: str
    node: str
    role: str
    credentials: str  # the credentials directory (with mesh.json)
    api: str
    console: str = ""  # its console and management API; "" when it runs none

    @property
    def path(self) -> Path:
        return home() / "run" / f"{self.pid}.json"

    def register(self) -> None:
        write_private(self.path, json.dumps(asdict(self)).encode())

    def unregister(self) -> None:
        self.path.unlink(missing_ok=True)


def running_nodes() -> list[RunningNode]:
    """The nodes whose process still runs, newest first; files left by a crash are ignored."""
    found = []
    for path in (home() / "run").glob("*.json"):
        try:
            node = RunningNode(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            continue
        if _alive(node.pid):
            found.append((path.stat().st_mtime, node))
    return [node for _, node in sorted(found, key=lambda item: -item[0])]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def default_node_name() -> str:
    """This machine's name as a node name (lowercase, letters, digits, '.' and '-')."""
    name = re.sub(r"[^a-z0-9.-]+", "-", socket.gethostname().lower()).strip("-.")[:63]
    return name if name and name != "root" else "node"
