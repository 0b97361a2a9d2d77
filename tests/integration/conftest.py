from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from helpers import LlamaServer


@pytest.fixture(scope="module")
async def llama(llama_server_bin: str, tiny_model: Path) -> AsyncIterator[LlamaServer]:
    server = LlamaServer(llama_server_bin, tiny_model, context=8192, parallel=2)
    await server.start()
    yield server
    await server.process.stop(5)
