"""What an rpc-server binary says of itself: the RPC protocol it speaks."""

from __future__ import annotations

import asyncio
import logging
import os
import pty
import re
import select
import subprocess
import time

logger = logging.getLogger(__name__)


async def rpc_version(binary: str, port: int, timeout_s: float = 20.0) -> str:
    """The RPC protocol an rpc-server binary speaks ("7.0.0"), read from the banner it prints
    on start (started on a loopback port, stopped at once); "" if it says none."""
    return await asyncio.to_thread(_banner_version, binary, port, timeout_s)


def _banner_version(binary: str, port: int, timeout_s: float) -> str:
    # a terminal, not a pipe: the banner is printf'd, and a pipe would hold it in a buffer
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            [binary, "--host", "127.0.0.1", "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=follower,
            stderr=follower,
        )
    except OSError as exc:
        os.close(leader)
        os.close(follower)
        logger.warning("cannot run %s: %s", binary, exc)
        return ""
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                seen += chunk
                found = re.search(rb"RPC server v(\d+\.\d+\.\d+)", seen)
                if found:
                    return found.group(1).decode()
            elif proc.poll() is not None:
                break
        return ""
    finally:
        proc.kill()
        proc.wait()
        os.close(leader)
