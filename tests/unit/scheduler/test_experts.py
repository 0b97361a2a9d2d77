"""The expert assignment for MoE shards, over many (nodes, experts, memory) cases: every
expert covered, the core on every node, shards within their node's capacity, the floor kept."""

from __future__ import annotations

import random

import pytest

from meshllm.scheduler.experts import (
    ExpertPlanError,
    assign_experts,
    covering_size,
    floor_for,
)


def rankings(layers: int, experts: int, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    result = []
    for _ in range(layers):
        order = list(range(experts))
        rng.shuffle(order)
        result.append(order)
    return result


CASES = [
    # (experts, used, capacities)
    (8, 2, [6, 6]),
    (8, 2, [4, 4]),
    (8, 2, [5, 4, 4]),
    (64, 8, [40, 40]),
    (64, 8, [48, 32, 32]),
    (128, 8, [64, 64, 64]),
    (128, 8, [96, 64]),
    (128, 8, [128, 50]),  # one node holds all: still a plan for both
    (60, 4, [30, 30, 30, 30]),
]


@pytest.mark.parametrize(("experts", "used", "capacities"), CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_every_plan_covers_keeps_the_core_and_fits(
    experts: int, used: int, capacities: list[int], seed: int
) -> None:
    ranking = rankings(3, experts, seed)
    floor = floor_for(experts, used)
    plan = assign_experts(ranking, capacities, floor=floor)
    for layer, order in enumerate(ranking):
        shards = [set(plan.shards[node][layer]) for node in range(len(capacities))]
        assert set().union(*shards) == set(range(experts))  # every expert somewhere
        core = set(order[: plan.core])
        assert all(core <= shard for shard in shards)  # the core everywhere
        for node, shard in enumerate(shards):
            assert floor <= len(shard) <= capacities[node]
            assert len(shard) == plan.expert_count(node)  # same count in every layer


@pytest.mark.parametrize(
    ("experts", "capacities", "core"),
    [(8, [6, 6], 4), (8, [4, 6], 2), (128, [64, 64, 64], 32), (128, [60, 96], 28)],
)
def test_the_core_is_half_the_experts_at_most(
    experts: int, capacities: list[int], core: int
) -> None:
    plan = assign_experts(rankings(2, experts), capacities, floor=2)
    assert plan.core == core


def test_the_core_is_the_best_ranked_experts_of_each_layer() -> None:
    ranking = [[7, 6, 5, 4, 3, 2, 1, 0], [0, 1, 2, 3, 4, 5, 6, 7]]
    plan = assign_experts(ranking, [6, 6], floor=2)
    assert plan.core == 4
    assert set(plan.shards[0][0]) >= {7, 6, 5, 4} and set(plan.shards[1][0]) >= {7, 6, 5, 4}
    assert set(plan.shards[0][1]) >= {0, 1, 2, 3} and set(plan.shards[1][1]) >= {0, 1, 2, 3}


def test_unique_experts_are_dealt_in_rank_order() -> None:
    ranking = [list(range(8))]
    plan = assign_experts(ranking, [6, 6], floor=2)
    # core 0-3; 4, 6 to the first node, 5, 7 to the second: both full
    assert plan.shards == (((0, 1, 2, 3, 4, 6),), ((0, 1, 2, 3, 5, 7),))


@pytest.mark.parametrize(
    ("capacities", "core"),
    [([4, 4], 0), ([5, 5], 2), ([6, 6], 4), ([5, 5, 5], 3), ([3, 3, 3], 0)],
)
def test_the_core_shrinks_until_every_expert_fits_somewhere(
    capacities: list[int], core: int
) -> None:
    plan = assign_experts(rankings(1, 8), capacities, floor=2)
    assert plan.core == core


@pytest.mark.parametrize(
    ("capacities", "floor", "message"),
    [
        ([4, 2], 3, "node 1 can hold 2 of 8 experts, below the floor of 3"),
        ([3, 3], 2, "2 node\\(s\\) holding 3/3 experts cannot cover all 8"),
        ([7], 2, "1 node\\(s\\) holding 7 experts cannot cover all 8"),
    ],
)
def test_plans_the_nodes_cannot_hold_are_refused_with_the_reason(
    capacities: list[int], floor: int, message: str
) -> None:
    with pytest.raises(ExpertPlanError, match=message):
        assign_experts(rankings(1, 8), capacities, floor=floor)


@pytest.mark.parametrize(
    ("experts", "used", "floor"), [(128, 8, 48), (8, 2, 3), (8, 4, 4), (60, 4, 23)]
)
def test_floor(experts: int, used: int, floor: int) -> None:
    assert floor_for(experts, used) == floor


def test_bad_rankings_are_refused() -> None:
    with pytest.raises(ExpertPlanError, match="each expert once"):
        assign_experts([[0, 1, 1, 3]], [3, 3], floor=1)
    with pytest.raises(ExpertPlanError, match="no layers or no nodes"):
        assign_experts([], [3], floor=1)


@pytest.mark.parametrize(
    ("experts", "nodes", "size"), [(8, 2, 6), (8, 3, 6), (8, 4, 5), (128, 2, 96), (8, 1, 8)]
)
def test_covering_size_is_the_fewest_that_cover_every_expert(
    experts: int, nodes: int, size: int
) -> None:
    assert covering_size(experts, nodes) == size
    assign_experts(rankings(1, experts), [size] * nodes, floor=1)  # covers: no error
