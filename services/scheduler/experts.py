"""Which experts each node's shard of an MoE model holds: a core of every layer's
highest-ranked experts on every node (half of them by default, fewer when the nodes could not
otherwise hold every expert), the rest spread so that every expert lives on at least one node,
each shard as large as its node can hold. A pure function of the ranking and the
nodes' capacities, with table tests.

Every layer of one shard holds the same number of experts (llama.cpp has one expert count per
model), but which experts may differ per layer: each layer follows its own ranking."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_CORE_FRACTION = 0.5  # half the experts on every node (the reference system's default)
# The fewest experts a shard may hold, as a fraction of the model's: 64 of 128 experts at
# top-8 ran coherent, every 32-of-128 shard produced garbage, a calibrated minimum was 46 of
# 128 (the reference system's figures). The quality gate still measures every shard.
FLOOR_FRACTION = 0.375


@dataclass(frozen=True)
class ExpertPlan:
    """shards[node][layer]: the sorted expert ids that node's shard holds in that layer."""

    shards: tuple[tuple[tuple[int, ...], ...], ...]
    core: int  # experts per layer on every node

    def expert_count(self, node: int) -> int:
        return len(self.shards[node][0]) if self.shards[node] else 0


class ExpertPlanError(ValueError):
    pass


def floor_for(expert_count: int, expert_used_count: int) -> int:
    """The fewest experts a shard may hold: FLOOR_FRACTION of them, and never fewer than the
    router picks per token."""
    return max(expert_used_count, math.ceil(expert_count * FLOOR_FRACTION))


def covering_size(experts: int, nodes: int, core_fraction: float = DEFAULT_CORE_FRACTION) -> int:
    """The fewest experts per shard that, over `nodes` shards with the default core, still
    hold every expert somewhere."""
    core = math.ceil(experts * core_fraction)
    return min(experts, core + math.ceil((experts - core) / nodes))


def assign_experts(
    ranking: Sequence[Sequence[int]],
    capacities: Sequence[int],
    *,
    floor: int,
    core_fraction: float = DEFAULT_CORE_FRACTION,
) -> ExpertPlan:
    """`ranking[layer]` lists that layer's experts, most used first; `capacities[node]` is how
    many experts per layer that node's shard can hold. Raises ExpertPlanError saying what is
    missing when the nodes cannot hold a plan."""
    if not ranking or not capacities:
        raise ExpertPlanError("no layers or no nodes to plan experts for")
    experts = len(ranking[0])
    if any(sorted(layer) != list(range(experts)) for layer in ranking):
        raise ExpertPlanError("every layer's ranking must list each expert once")
    sizes = [min(capacity, experts) for capacity in capacities]
    for node, size in enumerate(sizes):
        if size < floor:
            raise ExpertPlanError(
                f"node {node} can hold {size} of {experts} experts, below the floor of {floor}"
            )
    core = min(math.ceil(experts * core_fraction), min(sizes), _largest_core(sizes, experts))
    if core < 0:
        raise ExpertPlanError(
            f"{len(sizes)} node(s) holding {'/'.join(map(str, sizes))} experts cannot cover "
            f"all {experts}: add nodes or memory"
        )
    shards = [[_layer_shard(layer, sizes, core, node) for layer in ranking]
              for node in range(len(sizes))]  # fmt: skip
    return ExpertPlan(tuple(tuple(layers) for layers in shards), core)


def _largest_core(sizes: Sequence[int], experts: int) -> int:
    """The largest core that still leaves room for every other expert somewhere:
    sum(size - core) >= experts - core. Negative when even no core cannot cover them."""
    if len(sizes) == 1:
        return experts if sizes[0] >= experts else -1
    return (sum(sizes) - experts) // (len(sizes) - 1)


def _layer_shard(
    order: Sequence[int], sizes: Sequence[int], core: int, node: int
) -> tuple[int, ...]:
    """One layer of one node's shard: the core, the unique experts dealt to this node, then
    the best-ranked experts it lacks until it is full."""
    held = list(order[:core])
    rest = list(order[core:])
    free = [size - core for size in sizes]
    dealt: list[list[int]] = [[] for _ in sizes]
    turn = 0
    for expert in rest:  # deal in rank order, round-robin over nodes with room left
        while len(dealt[turn]) >= free[turn]:
            turn = (turn + 1) % len(sizes)
        dealt[turn].append(expert)
        turn = (turn + 1) % len(sizes)
    held += dealt[node]
    for expert in rest:
        if len(held) >= sizes[node]:
            break
        if expert not in held:
            held.append(expert)
    return tuple(sorted(held))
