"""Expert sharding as a pure function: which devices each hold a shard of a mixture of
experts that fits none of them whole, and how many experts each shard holds.

- Never shard what fits: a model that one device holds whole gets no shard plan.
- Each device's shard is as large as it can hold: the trunk (every tensor that is not
  per-expert, with the KV cache and headroom the caller adds) plus as many experts as the
  rest of its memory takes, never more than the model has.
- A device that cannot hold the floor of experts (`experts.floor_for`, or more where shards
  of a size failed the quality gate: `min_experts`) takes no shard.
- The fewest devices win, the largest first: fewer, bigger shards lose less quality, and
  every shard that is added is one more node that each session's hash can land on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .experts import ExpertPlan, ExpertPlanError, assign_experts, floor_for
from .split import Device


@dataclass(frozen=True)
class MoeModel:
    trunk_bytes: int  # what every shard holds besides its experts
    expert_bytes: int  # one expert, summed over every layer
    experts: int
    experts_used: int


@dataclass(frozen=True)
class ShardPlan:
    devices: tuple[Device, ...]
    experts: ExpertPlan  # experts.shards[i] is devices[i]'s


def capacity(model: MoeModel, device: Device) -> int:
    """How many experts per layer a shard on `device` can hold beside the trunk."""
    room = device.free_bytes - model.trunk_bytes
    if room <= 0 or model.expert_bytes <= 0:
        return 0
    return min(model.experts, room // model.expert_bytes)


def plan_shards(
    model: MoeModel,
    devices: Sequence[Device],
    ranking: Sequence[Sequence[int]],
    *,
    force: bool = False,
    min_experts: int = 0,
) -> tuple[ShardPlan | None, list[str]]:
    """The shard plan, or None with the reasons there is none. `force` shards a model that
    one device could hold (for tests and benchmarks); `min_experts` raises the floor."""
    whole = model.trunk_bytes + model.experts * model.expert_bytes
    if not force and any(d.free_bytes >= whole for d in devices):
        return None, ["fits on one device whole: not sharded"]
    floor = max(floor_for(model.experts, model.experts_used), min_experts)
    if min_experts >= model.experts:
        return None, [f"shards of up to {min_experts - 1} experts failed the quality gate"]
    reasons: list[str] = []
    usable: list[tuple[int, Device]] = []
    for device in devices:
        held = capacity(model, device)
        if held < floor:
            reasons.append(
                f"{device.name}: room for {held} of {model.experts} experts beside the trunk, "
                f"below the floor of {floor}"
            )
        else:
            usable.append((held, device))
    usable.sort(key=lambda pair: (-pair[0], pair[1].name))
    last_error = ""
    for count in range(2, len(usable) + 1):
        chosen = usable[:count]
        try:
            plan = assign_experts(ranking, [held for held, _ in chosen], floor=floor)
        except ExpertPlanError as exc:
            last_error = str(exc)
            continue
        return ShardPlan(tuple(d for _, d in chosen), plan), []
    if len(usable) < 2:
        reasons.append(f"{len(usable)} device(s) can hold a shard; sharding needs at least 2")
    elif last_error:
        reasons.append(f"even all {len(usable)} usable devices fall short: {last_error}")
    return None, reasons
