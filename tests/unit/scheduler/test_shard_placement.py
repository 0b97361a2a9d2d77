"""Placement of a mixture of experts too big for one device: expert shards as one group that
is kept in part, re-planned around lost shards, and sized up when shards fail the gate."""

from __future__ import annotations

import pytest

from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.core.shard_ids import shard_id
from meshllm.scheduler.placement import MoeInputs, Plan, Want, moe_model, plan
from meshllm.scheduler.settings import PlacementSettings

GiB = 2**30
SETTINGS = PlacementSettings(default_context=4096, headroom_bytes=0, headroom_fraction=0.0)
SHARD = pb.ASSIGNMENT_ROLE_SHARD
LAYERS = 2


def worker(node: str, budget_gib: float, *, draining: bool = False) -> pb.WorkerRecord:
    return pb.WorkerRecord(
        node=node,
        worker_id="gpu0",
        lease_id=1,
        draining=draining,
        device=pb.Device(id="gpu0", memory_budget_bytes=int(budget_gib * GiB)),
    )


def mixture(name: str = "moe", trunk_gib: float = 2, experts_gib: float = 8) -> pb.CatalogEntry:
    """8 experts top-2: every expert (all layers) weighs experts_gib / 8."""
    return pb.CatalogEntry(
        name=name,
        source=pb.ModelSource(kind=pb.MODEL_SOURCE_KIND_PATH, node="a"),
        facts=pb.ModelFacts(
            file_size_bytes=int((trunk_gib + experts_gib) * GiB),
            expert_tensor_bytes=int(experts_gib * GiB),
            expert_count=8,
            expert_used_count=2,
            context_length=8192,
            block_count=LAYERS,
        ),
    )


def ranking(model: str = "moe") -> pb.ExpertRanking:
    order = [7, 6, 5, 4, 3, 2, 1, 0]  # most used first
    return pb.ExpertRanking(
        model=model, method="imatrix", layers=[pb.LayerRanking(experts=order)] * LAYERS
    )


RANKED = MoeInputs(rankings={"moe": ranking()})
FILES = {"moe": {"a"}}
WANT = Want("moe", "", 0)


def shards_of(result: Plan) -> dict[str, pb.Assignment]:
    return {a.node: a for _, a in result.create if a.role == SHARD}


def run(
    workers: list[pb.WorkerRecord],
    moe: MoeInputs = RANKED,
    assignments: dict[str, pb.Assignment] | None = None,
    want: Want = WANT,
) -> Plan:
    return plan([want], {"moe": mixture()}, FILES, workers, assignments or {}, SETTINGS, moe=moe)


def test_memory_of_a_mixture_splits_into_trunk_and_experts() -> None:
    model = moe_model(mixture().facts, 4096, SETTINGS)
    assert model is not None
    assert (model.trunk_bytes, model.expert_bytes, model.experts) == (2 * GiB, GiB, 8)
    assert moe_model(pb.ModelFacts(file_size_bytes=GiB), 4096, SETTINGS) is None


def test_a_mixture_that_fits_one_device_runs_solo() -> None:
    result = run([worker("a", 11), worker("b", 8)])
    assert [a.role for _, a in result.create] == [pb.ASSIGNMENT_ROLE_SOLO]


def test_a_mixture_too_big_for_any_device_is_sharded_as_one_group() -> None:
    # 8 GiB each: trunk 2 + 6 experts; the 5 GiB node could hold only 3 (the floor) and is
    # not needed
    result = run([worker("a", 8), worker("b", 8), worker("c", 5)])
    shards = shards_of(result)
    assert sorted(shards) == ["a", "b"]
    assert result.status["moe"].placed
    specs = [shards[n].shard for n in "ab"]
    assert len({a.group_id for a in shards.values()}) == 1
    for spec in specs:
        assert spec.expert_count == 6 and spec.core == 4 and len(spec.layers) == LAYERS
        assert spec.shard_id == shard_id("moe", [list(layer.experts) for layer in spec.layers])
        assert list(spec.plan) == [s.shard_id for s in specs]
        assert {7, 6, 5, 4} <= set(spec.layers[0].experts)  # the core: the best-ranked four
    union = set(specs[0].layers[0].experts) | set(specs[1].layers[0].experts)
    assert union == set(range(8))
    assert all(a.memory_bytes == 8 * GiB for a in shards.values())
    assert "expert shards over 2 devices" in result.status["moe"].reasons[0]


@pytest.mark.parametrize(
    ("moe", "files", "why"),
    [
        (MoeInputs(), FILES, "waiting for the registry to rank the experts"),
        (RANKED, {}, "no registry holds the file"),
    ],
)
def test_a_mixture_without_ranking_or_file_waits_and_says_why(
    moe: MoeInputs, files: dict[str, set[str]], why: str
) -> None:
    workers = [worker("a", 8), worker("b", 8)]
    result = plan([Want("moe", "", 0)], {"moe": mixture()}, files, workers, {}, SETTINGS, moe=moe)
    assert result.create == []
    assert not result.status["moe"].placed
    assert any(why in r for r in result.status["moe"].reasons)


def test_a_forced_split_of_a_mixture_shards_what_fits() -> None:
    result = run([worker("a", 20), worker("b", 20)], want=Want("moe", "", 0, split=True))
    shards = shards_of(result)
    assert sorted(shards) == ["a", "b"]
    assert all(a.shard.expert_count == 8 for a in shards.values())


def planned(workers: list[pb.WorkerRecord]) -> dict[str, pb.Assignment]:
    return {f"k-{a.node}": a for _, a in run(workers).create}


def passed(a: pb.Assignment, ok: bool = True, model: str = "moe") -> pb.ShardRecord:
    return pb.ShardRecord(model=model, spec=a.shard, passed=ok)


def test_a_lost_shard_keeps_the_others_and_is_placed_again_where_it_fits() -> None:
    group = planned([worker("a", 8), worker("b", 8)])
    moe = MoeInputs(
        rankings={"moe": ranking()},
        shards={"moe": {a.shard.shard_id: passed(a) for a in group.values()}},
    )
    alive = [worker("a", 8), worker("c", 8)]  # b is gone, c is new
    result = run(alive, moe, group)
    assert [k for k, _ in result.keep] == ["k-a"]
    assert result.delete == ["k-b"]
    replaced = shards_of(result)
    assert list(replaced) == ["c"]
    assert replaced["c"].shard.shard_id == group["k-b"].shard.shard_id
    assert replaced["c"].group_id == group["k-a"].group_id


def test_a_lost_shard_never_written_is_not_replaced_and_the_rest_serve_on() -> None:
    group = planned([worker("a", 8), worker("b", 8)])
    result = run([worker("a", 8), worker("c", 8)], RANKED, group)
    assert [k for k, _ in result.keep] == ["k-a"]
    assert result.create == []
    assert result.status["moe"].placed


def test_a_shard_that_failed_the_gate_goes_and_smaller_shards_are_not_planned() -> None:
    workers = [worker("a", 8), worker("b", 8), worker("c", 9)]
    small = planned([worker("a", 8), worker("b", 8)])
    failed = MoeInputs(
        rankings={"moe": ranking()},
        shards={"moe": {a.shard.shard_id: passed(a, ok=False) for a in small.values()}},
    )
    result = run(workers, failed, small)
    assert sorted(result.delete) == ["k-a", "k-b"]
    shards = shards_of(result)
    # 6-expert shards failed: a and b (room for 6) drop out; c (room for 7) alone cannot shard
    assert shards == {}
    assert any("below the floor of 7" in r for r in result.status["moe"].reasons)
    bigger = run([*workers, worker("d", 9)], failed, small)
    assert sorted(shards_of(bigger)) == ["c", "d"]
    assert all(a.shard.expert_count == 7 for a in shards_of(bigger).values())


def test_every_shard_of_the_largest_size_failing_leaves_the_model_pending() -> None:
    specs = {
        "x": pb.ShardRecord(model="moe", spec=pb.ShardSpec(shard_id="x", expert_count=8)),
    }
    moe = MoeInputs(rankings={"moe": ranking()}, shards={"moe": specs})
    result = run([worker("a", 8), worker("b", 8)], moe)
    assert result.create == []
    assert any("failed the quality gate" in r for r in result.status["moe"].reasons)


def test_a_shard_group_of_an_unwanted_model_goes_whole() -> None:
    group = planned([worker("a", 8), worker("b", 8)])
    result = plan([], {"moe": mixture()}, FILES, [worker("a", 8), worker("b", 8)], group, SETTINGS)
    assert sorted(result.delete) == ["k-a", "k-b"]
