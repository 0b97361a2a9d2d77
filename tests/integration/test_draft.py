"""Speculative decoding with a real llama-server: the worker's own launch of a model with a
draft of its vocabulary answers exactly as the model alone does (greedy), while the draft
proposes tokens; a draft that is mostly wrong is dropped, one that is right is kept."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from helpers import eventually
from prometheus_client import REGISTRY

from meshllm.core.metrics import PREFIX
from meshllm.worker.drafts import DraftGuard
from meshllm.worker.launchers import LLAMA_SERVER
from meshllm.worker.llama_server import InstanceSpec
from meshllm.worker.metrics import LlamaScraper
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


@pytest.fixture
async def supervisor_with_guard(
    supervisor: Supervisor,
) -> AsyncIterator[Supervisor]:
    """The supervisor with the worker's llama-server scraper and draft guard running, quick:
    drafts judged after 16 drafted tokens."""
    async with aiohttp.ClientSession() as http:
        scraper = LlamaScraper(supervisor, lambda: http, interval_s=0.1)
        guard = DraftGuard(supervisor, scraper, judged_after=16, min_acceptance=0.3, interval_s=0.1)
        tasks = [asyncio.create_task(c.run()) for c in (scraper, guard)]
        try:
            yield supervisor
        finally:
            for c in (scraper, guard):
                await c.stop()
            await asyncio.gather(*tasks)


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


def dropped(model: str) -> float:
    """The worker's meshllm_drafts_dropped_total for the model, as Prometheus reads it."""
    name = f"{PREFIX}drafts_dropped_total"
    return REGISTRY.get_sample_value(name, {"model": model}) or 0.0


def spec_of(model: Path, draft: Path) -> InstanceSpec:
    return InstanceSpec("i", "tiny", str(model), 512, parallel=1, threads=1, draft_path=str(draft))


@pytest.mark.parametrize(("draft_is_the_model", "kept"), [(False, False), (True, True)])
async def test_a_draft_that_is_mostly_wrong_is_dropped_and_a_right_one_kept(
    supervisor_with_guard: Supervisor,
    tiny_model: Path,
    draft_model: Path,
    draft_is_the_model: bool,
    kept: bool,
) -> None:
    supervisor = supervisor_with_guard
    draft = tiny_model if draft_is_the_model else draft_model  # itself: always right
    instance = supervisor.start(spec_of(tiny_model, draft))
    assert await instance.wait_settled(60) == InstanceState.READY
    before = dropped("tiny")
    first = await complete(instance, PROMPTS[0])
    assert first["timings"]["draft_n"] >= 16
    if kept:
        await asyncio.sleep(1.0)  # ten looks of the guard at its counters
    else:
        await eventually(lambda: supervisor.instances.get("i") not in (None, instance), 30)
    now = supervisor.instances["i"]
    assert (now is instance) is kept
    assert await now.wait_settled(60) == InstanceState.READY
    assert bool(now.spec.draft_path) is kept
    assert dropped("tiny") == before + (0 if kept else 1)
    again = await complete(now, PROMPTS[0])
    assert again["content"] == first["content"]  # without its draft it answers the same
    assert ("draft_n" in again["timings"]) is kept
