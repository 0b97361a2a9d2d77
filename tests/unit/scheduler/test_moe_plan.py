"""Expert-shard plans: never for what fits whole, the fewest and largest devices, shards
within memory, devices below the floor left out, and reasons when there is no plan."""

from __future__ import annotations

import pytest

from meshllm.scheduler.moe_plan import MoeModel, capacity, plan_shards
from meshllm.scheduler.split import Device

GB = 10**9
# 8 experts of 1 GB each over all layers, a 2 GB trunk: 10 GB whole; the floor is 3 experts
MODEL = MoeModel(trunk_bytes=2 * GB, expert_bytes=GB, experts=8, experts_used=2)
RANKING = [list(range(8))] * 4


def devices(*free_gb: float) -> list[Device]:
    return [Device(f"n{i}", "w0", int(gb * GB)) for i, gb in enumerate(free_gb)]


@pytest.mark.parametrize(("free_gb", "held"), [(10, 8), (12, 8), (8, 6), (5.5, 3), (2, 0), (1, 0)])
def test_capacity(free_gb: float, held: int) -> None:
    assert capacity(MODEL, devices(free_gb)[0]) == held


@pytest.mark.parametrize(
    ("free_gb", "chosen", "sizes"),
    [
        ((8, 8), ["n0", "n1"], [6, 6]),
        ((8, 8, 8), ["n0", "n1"], [6, 6]),  # the fewest devices
        ((6, 9, 7), ["n1", "n2"], [7, 5]),  # the largest first
        ((6, 6, 6), ["n0", "n1"], [4, 4]),  # 4 + 4 with a core of 0 covers 8
        ((5, 5, 5), ["n0", "n1", "n2"], [3, 3, 3]),  # two of 3 cannot cover 8: three
        ((8, 4, 8), ["n0", "n2"], [6, 6]),
    ],
)
def test_the_fewest_largest_devices_hold_the_shards(
    free_gb: tuple[float, ...], chosen: list[str], sizes: list[int]
) -> None:
    plan, reasons = plan_shards(MODEL, devices(*free_gb), RANKING)
    assert plan is not None, reasons
    assert [d.node for d in plan.devices] == chosen
    assert [plan.experts.expert_count(i) for i in range(len(chosen))] == sizes
    for device, size in zip(plan.devices, sizes, strict=True):
        assert MODEL.trunk_bytes + size * MODEL.expert_bytes <= device.free_bytes
    for layer in range(len(RANKING)):
        covered = set().union(*(set(s[layer]) for s in plan.experts.shards))
        assert covered == set(range(8))


def test_what_fits_whole_is_never_sharded_unless_forced() -> None:
    plan, reasons = plan_shards(MODEL, devices(10, 8), RANKING)
    assert plan is None and reasons == ["fits on one device whole: not sharded"]
    forced, _ = plan_shards(MODEL, devices(10, 8), RANKING, force=True)
    assert forced is not None and [d.node for d in forced.devices] == ["n0", "n1"]


@pytest.mark.parametrize(
    ("free_gb", "reason"),
    [
        ((4, 4), "n0/w0: room for 2 of 8 experts beside the trunk, below the floor of 3"),
        ((9, 4), "1 device(s) can hold a shard; sharding needs at least 2"),
        ((5, 5), "even all 2 usable devices fall short"),
    ],
)
def test_no_plan_says_why(free_gb: tuple[float, ...], reason: str) -> None:
    plan, reasons = plan_shards(MODEL, devices(*free_gb), RANKING)
    assert plan is None and any(reason in r for r in reasons), reasons


@pytest.mark.parametrize(
    ("free_gb", "min_experts", "chosen", "why"),
    [
        ((8, 8, 9, 9), 0, ["n2", "n3"], ""),  # the largest two, 7 experts each
        ((8, 8), 7, [], "below the floor of 7"),  # 6-expert shards failed: these are too small
        ((8, 8, 9, 9), 7, ["n2", "n3"], ""),
        ((9, 9), 8, [], "shards of up to 7 experts failed the quality gate"),
    ],
)
def test_shards_of_a_size_that_failed_the_gate_are_not_planned_again(
    free_gb: tuple[float, ...], min_experts: int, chosen: list[str], why: str
) -> None:
    plan, reasons = plan_shards(MODEL, devices(*free_gb), RANKING, min_experts=min_experts)
    names = [d.node for d in plan.devices] if plan else []
    assert names == chosen
    if why:
        assert any(why in r for r in reasons), reasons
