"""A vision model without downloads: the pinned llama-server loads the tiny llama model with a
generated projector (make_projector) and answers a chat request carrying an image, whose
patches reach the model as prompt tokens; a projector whose output size is not the model's
embedding size stops llama-server at start."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from helpers import LlamaServer, png

from meshllm.cli.make_projector import ProjectorShape, cached_projector, write_projector
from meshllm.core.gguf_header import read_header
from meshllm.registry.gguf_facts import read_facts

pytestmark = pytest.mark.integration

SHAPE = ProjectorShape()


@pytest.fixture(scope="module")
def projector() -> Path:
    return cached_projector(SHAPE)


@pytest.fixture(scope="module")
async def vision_server(
    llama_server_bin: str, tiny_model: Path, projector: Path
) -> AsyncIterator[LlamaServer]:
    server = LlamaServer(
        llama_server_bin, tiny_model, context=2048, parallel=1, threads=1, mmproj=projector
    )
    await server.start()
    yield server
    await server.process.stop(5)


async def chat(server: LlamaServer, content: list[dict[str, Any]]) -> dict[str, Any]:
    body = {"messages": [{"role": "user", "content": content}], "max_tokens": 4}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.url}/v1/chat/completions", json=body) as reply,
    ):
        assert reply.status == 200, await reply.text()
        return await reply.json()


def test_the_projector_projects_to_the_models_embedding_size(
    tiny_model: Path, projector: Path
) -> None:
    embedding = read_facts(tiny_model).embedding_length
    assert SHAPE.projection_dim == embedding
    # what llama.cpp compares with the text model: the last projector layer's output size
    (mm_2,) = [t for t in read_header(projector).tensors if t.name == "mm.2.weight"]
    assert mm_2.dims[1] == embedding
    assert read_facts(projector).vision


async def test_a_chat_request_with_an_image_goes_through_the_projector(
    vision_server: LlamaServer,
) -> None:
    text = {"type": "text", "text": "What is in this picture?"}
    url = "data:image/png;base64," + base64.b64encode(png(40, 24)).decode()
    image = {"type": "image_url", "image_url": {"url": url}}

    with_image = await chat(vision_server, [text, image])
    text_only = await chat(vision_server, [text])

    assert with_image["choices"][0]["message"]["content"]
    # LLaVA gives the model one embedding per patch of the image, resized to image_size
    extra = with_image["usage"]["prompt_tokens"] - text_only["usage"]["prompt_tokens"]
    assert extra == SHAPE.patches


async def test_a_projector_of_another_embedding_size_stops_llama_server(
    llama_server_bin: str, tiny_model: Path, tmp_path: Path
) -> None:
    wrong = write_projector(tmp_path / "mmproj.gguf", ProjectorShape(projection_dim=96))
    server = LlamaServer(
        llama_server_bin, tiny_model, context=2048, parallel=1, threads=1, mmproj=wrong
    )
    await server.process.start()
    try:
        code = await asyncio.wait_for(server.process.wait(), 30)
    finally:
        await server.process.stop(5)
    expected = (
        f"mismatch between text model (n_embd = {SHAPE.projection_dim}) and mmproj (n_embd = 96)"
    )
    assert code != 0
    assert expected in "\n".join(server.process.tail)
