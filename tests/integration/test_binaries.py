"""What a worker learns from its llama.cpp binaries before anything runs."""

from __future__ import annotations

import re

from meshllm.core.binaries import find_companion
from meshllm.core.ports import free_port
from meshllm.worker.binaries import rpc_version


async def test_the_rpc_protocol_is_read_from_the_rpc_servers_banner(llama_server_bin: str) -> None:
    rpc = find_companion("ggml-rpc-server", llama_server_bin)
    assert rpc is not None
    assert re.fullmatch(r"\d+\.\d+\.\d+", await rpc_version(rpc.path, free_port()))


async def test_a_binary_that_prints_no_banner_speaks_no_known_protocol() -> None:
    assert await rpc_version("/bin/true", free_port(), timeout_s=5) == ""
    assert await rpc_version("/nonexistent/ggml-rpc-server", free_port()) == ""
