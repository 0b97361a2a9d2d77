"""Ranking a generated mixture of experts (8 experts, top 2, a router that always picks among
experts 0-3) with the real llama-imatrix, the declared fallback when it cannot run, and the
whole path from ranking to assignment to shards that answer as the full model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_shards import SHAPE, greedy_tokens

from meshllm.cli.make_model import cached_model
from meshllm.core.binaries import find_binary, find_companion
from meshllm.registry.expert_ranking import (
    FALLBACK_WARNING,
    IMATRIX,
    ROUTER_NORM,
    rank_experts,
)
from meshllm.registry.shards import write_shard
from meshllm.scheduler.experts import assign_experts, floor_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def moe_model() -> Path:
    return cached_model(SHAPE)


@pytest.fixture(scope="module")
def imatrix() -> str:
    found = find_companion("llama-imatrix", find_binary("llama-server").path)
    assert found is not None, "no llama-imatrix beside llama-server: run `make llama`"
    return found.path


def test_router_picks_rank_the_routed_experts_first(moe_model: Path, imatrix: str) -> None:
    ranking = rank_experts(moe_model, imatrix)
    assert ranking.method == IMATRIX and "llama-imatrix" in ranking.note
    assert len(ranking.order) == SHAPE.layers
    for order, scores in zip(ranking.order, ranking.scores, strict=True):
        assert set(order[:4]) <= {0, 1, 2, 3}  # only routed experts lead
        assert all(scores[e] == 0 for e in range(4, 8))  # the others were never picked
        assert sum(scores) > 0
        assert sorted(order) == list(range(8))


@pytest.mark.parametrize(("binary", "why"), [(None, "not installed"), ("/bin/false", "exit 1")])
def test_the_fallback_says_it_is_one(moe_model: Path, binary: str | None, why: str) -> None:
    ranking = rank_experts(moe_model, binary)
    assert ranking.method == ROUTER_NORM
    assert FALLBACK_WARNING in ranking.note and why in ranking.note


async def test_ranked_assigned_shards_answer_as_the_full_model(
    llama_server_bin: str, moe_model: Path, imatrix: str, tmp_path: Path
) -> None:
    """Two nodes of six experts each: the core (half the experts) is what the router uses,
    so each shard answers exactly as the whole model."""
    ranking = rank_experts(moe_model, imatrix)
    plan = assign_experts(ranking.order, [6, 6], floor=floor_for(8, 2))
    full = await greedy_tokens(llama_server_bin, moe_model)
    for node in range(2):
        shard = write_shard(moe_model, tmp_path / f"node{node}.gguf", plan.shards[node])
        assert shard.expert_count == 6
        assert await greedy_tokens(llama_server_bin, shard.path) == full


def shard_cli(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "meshllm.cli", "dev", "shard", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)


def test_the_shard_command_ranks_writes_and_measures(moe_model: Path, tmp_path: Path) -> None:
    done = shard_cli(str(moe_model), "--nodes", "2", "--out", str(tmp_path), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ranking"]["method"] == IMATRIX and report["core"] == 4
    assert [s["passed"] for s in report["shards"]] == [True, True]
    assert all(Path(s["path"]).is_file() and s["experts"] == 6 for s in report["shards"])


def test_the_shard_command_reports_shards_that_fail_the_gate(
    moe_model: Path, tmp_path: Path
) -> None:
    """Three shards of four experts: the core shrinks to two, so some shards lack experts
    the router uses, and the gate says so (exit status 3)."""
    done = shard_cli(str(moe_model), "--nodes", "3", "--experts", "4", "--out", str(tmp_path),
                     "--json")  # fmt: skip
    assert done.returncode == 3, done.stderr
    shards = json.loads(done.stdout)["shards"]
    assert len(shards) == 3 and not all(s["passed"] for s in shards)
    assert any("fails the gate" in s["quality"] for s in shards)


def test_the_shard_command_refuses_a_dense_model_in_one_line(tiny_model: Path) -> None:
    done = shard_cli(str(tiny_model))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        f"mesh-llm dev shard: {tiny_model.name} is not a mixture-of-experts model "
        "(no llama.expert_count)"
    ]


@pytest.mark.parametrize(
    ("flags", "message"),
    [(["--nodes", "0"], "--nodes must be at least 1"), (["--experts", "-3"], "--experts must be")],
)
def test_the_shard_command_refuses_bad_flags_in_one_line(
    moe_model: Path, flags: list[str], message: str
) -> None:
    done = shard_cli(str(moe_model), *flags)
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
