"""Speculative decoding with a real llama-server: the worker's own launch of a model with a
draft of its vocabulary answers exactly as the model alone does (greedy), while the draft
proposes tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from meshllm.worker.launchers import LLAMA_SERVER
from meshllm.worker.llama_server import InstanceSpec
from meshllm.worker.settings import SupervisorSettings
from meshllm.worker.supervisor import InstanceState, ManagedInstance, Supervisor

pytestmark = pytest.mark.integration
PROMPTS = ["Once upon a time", "The capital of France is", "1, 2, 3,"]


@pytest.fixture
async def supervisor(llama_server_bin: str, tmp_path: Path) -> AsyncIterator[Supervisor]:
    async with aiohttp.ClientSession() as http:
        settings = SupervisorSettings(log_dir=str(tmp_path), port_range="32100-32199")
        running = Supervisor(settings, {LLAMA_SERVER: llama_server_bin}, http)
        try:
            yield running
        finally:
            await running.stop()


async def complete(instance: ManagedInstance, prompt: str) -> dict:
    body = {"prompt": prompt, "n_predict": 32, "temperature": 0, "cache_prompt": False}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"http://127.0.0.1:{instance.port}/completion", json=body) as reply,
    ):
        assert reply.status == 200, await reply.text()
        return await reply.json()


async def test_a_draft_changes_no_answer_and_drafts_tokens(
    supervisor: Supervisor, tiny_model: Path, draft_model: Path
) -> None:
    def spec(name: str, draft: str = "") -> InstanceSpec:
        return InstanceSpec(
            name, "tiny", str(tiny_model), 512, parallel=1, threads=1, draft_path=draft
        )

    alone = supervisor.start(spec("alone"))
    drafted = supervisor.start(spec("drafted", str(draft_model)))
    assert await alone.wait_settled(60) == InstanceState.READY
    assert await drafted.wait_settled(60) == InstanceState.READY
    proposed = 0
    for prompt in PROMPTS:
        plain, sped = await complete(alone, prompt), await complete(drafted, prompt)
        assert sped["content"] == plain["content"] and plain["tokens_predicted"] == 32
        assert "draft_n" not in plain["timings"]
        proposed += sped["timings"]["draft_n"]
    assert proposed > 0  # the draft was asked, not only loaded
