"""Faults on one box under load: a process of the stack is killed or frozen while requests
stream through the gateway. Every failure a client sees must be a clean error (except when
the gateway itself dies: then the connection just drops), nothing may hang, and the stack
must come back by itself."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import httpx
import pytest
from harness import ServeProcess, local_serve
from load import Load, Verdict, judge, recovery_time, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.faults, pytest.mark.timeout(600)]
FIRST_BYTE_TIMEOUT_S = 4  # what a frozen llama-server costs a non-streamed request


@pytest.fixture(scope="module")
def box(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    os.environ["MESH_PROXY__FIRST_BYTE_TIMEOUT_S"] = str(FIRST_BYTE_TIMEOUT_S)
    try:
        serve = local_serve(tmp_path_factory.mktemp("faults"), tiny_model, parallel=8)
    finally:
        del os.environ["MESH_PROXY__FIRST_BYTE_TIMEOUT_S"]
    try:
        serve.wait_event("model_ready")
        yield serve
    finally:
        serve.stop()


def serving(box: ServeProcess, model: str) -> bool:
    return model in box.served()


def steady(load: Load, last: int = 8) -> bool:
    """The latest requests all succeeded (no client is backing off after an error)."""
    recent = sorted(load.outcomes, key=lambda o: o.ended)[-last:]
    return len(recent) == last and all(o.result == "ok" for o in recent)


def under_load(box: ServeProcess, model: str, fault, settle_s: float = 2.0, **options):  # type: ignore[no-untyped-def]
    """Run `fault()` after `settle_s` of load, keep the load on until the model answers
    again (and a little longer), and judge what the fault cost."""
    load = Load(box.api, model, **options).start()
    time.sleep(settle_s)
    wait_until(lambda: steady(load), 60, "the load steady before the fault")
    fault_at = time.monotonic()
    fault()
    recovered_s = recovery_time(box.api, model, fault_at, box.headers)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:  # the load itself succeeds again, too
        fresh = [o for o in load.outcomes if o.started > fault_at + (recovered_s or 0)]
        if sum(1 for o in fresh if o.result == "ok") >= 8:
            break
        time.sleep(0.2)
    outcomes = load.stop()
    return judge(outcomes, fault_at, recovered_s), outcomes


def test_sigkill_of_llama_server_mid_stream(box: ServeProcess, tiny_model: Path, record) -> None:  # type: ignore[no-untyped-def]
    victim = box.pid_of("llama-server")
    verdict, _ = under_load(
        box, tiny_model.stem, lambda: os.kill(victim, signal.SIGKILL), max_tokens=200
    )
    record("llama-server SIGKILL mid-stream", verdict)
    assert verdict.failed >= 1 and verdict.dirty == 0 and verdict.hung == 0
    assert verdict.recovered_s is not None and box.pid_of("llama-server") != victim


def test_sigkill_of_the_worker(box: ServeProcess, tiny_model: Path, record) -> None:  # type: ignore[no-untyped-def]
    victim = box.pid_of("worker")
    verdict, _ = under_load(box, tiny_model.stem, lambda: os.kill(victim, signal.SIGKILL))
    record("worker SIGKILL", verdict)
    assert verdict.dirty == 0 and verdict.hung == 0 and verdict.recovered_s is not None


def test_sigkill_of_the_gateway(box: ServeProcess, tiny_model: Path, record) -> None:  # type: ignore[no-untyped-def]
    victim = box.pid_of("gateway")
    verdict, outcomes = under_load(box, tiny_model.stem, lambda: os.kill(victim, signal.SIGKILL))
    record("gateway SIGKILL (serve restarts it)", verdict)
    assert verdict.failed >= 1 and verdict.hung == 0 and verdict.recovered_s is not None
    # with the gateway gone, a connection can only drop: nothing else may
    assert all("Error" in o.detail or o.result != "dirty" for o in outcomes)
    assert any(e.get("event") == "restarted" and e.get("service") == "gateway" for e in box.events)


def test_sigkill_of_the_store(box: ServeProcess, tiny_model: Path, record) -> None:  # type: ignore[no-untyped-def]
    victim = box.pid_of("etcd")
    verdict, _ = under_load(box, tiny_model.stem, lambda: os.kill(victim, signal.SIGKILL))
    record("etcd SIGKILL (serving goes on; serve restarts it)", verdict)
    assert verdict.failed == 0
    wait_until(lambda: box.pid_of("etcd") != victim, 30, "etcd restarted")


def test_sigstop_of_llama_server_beyond_the_request_timeout(
    box: ServeProcess, tiny_model: Path, record
) -> None:  # type: ignore[no-untyped-def]
    victim = box.pid_of("llama-server")

    def freeze() -> None:
        os.kill(victim, signal.SIGSTOP)
        time.sleep(FIRST_BYTE_TIMEOUT_S + 2)
        os.kill(victim, signal.SIGCONT)

    verdict, outcomes = under_load(box, tiny_model.stem, freeze, stream=False)
    record(f"llama-server SIGSTOP for {FIRST_BYTE_TIMEOUT_S + 2} s", verdict)
    assert verdict.dirty == 0 and verdict.hung == 0 and verdict.recovered_s is not None
    assert any("504" in o.detail for o in outcomes), "a frozen upstream is a 504, in time"


def test_two_hundred_clients_leave_mid_stream(box: ServeProcess, tiny_model: Path, record) -> None:  # type: ignore[no-untyped-def]
    """200 streams opened at once (8 slots: most wait in llama-server's queue), every
    client gone after a second: every slot is free again and the box still answers."""
    llama = f"http://127.0.0.1:{box.llama_port(tiny_model.stem)}"

    async def leave() -> None:
        body = {
            "model": tiny_model.stem,
            "stream": True,
            "max_tokens": 2000,
            "messages": [{"role": "user", "content": "Write a long story."}],
        }
        timeout = aiohttp.ClientTimeout(total=None)
        async with aiohttp.ClientSession(timeout=timeout) as http:

            async def one() -> None:
                async with http.post(f"{box.api}/chat/completions", json=body) as reply:
                    await reply.content.readany()
                    await asyncio.sleep(1.0)  # then the client is gone

            tasks = [asyncio.create_task(one()) for _ in range(200)]
            await asyncio.sleep(2.0)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(leave())

    def idle() -> bool:
        slots = httpx.get(f"{llama}/slots", timeout=5).json()
        return not any(slot["is_processing"] for slot in slots)

    freed_s = wait_until(idle, 60, "every slot idle")  # counted from the last client leaving
    answer = box.client().chat.completions.create(
        model=tiny_model.stem, max_tokens=4, messages=[{"role": "user", "content": "hi"}]
    )
    assert answer.choices
    record("200 clients gone mid-stream (slots freed)", Verdict(200, 0, 0, 0, 0, freed_s))
