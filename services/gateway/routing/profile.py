"""The routing policy as data: named plugins with their parameters, and a profile that says
which run and how much each scorer weighs (after llm-d's EndpointPickerConfig). Built once
at start; an unknown plugin type, a bad parameter or a profile without exactly one picker is
refused there with a message that names it.

A profile ranks a model's replicas: filters in order split them into the preferred and the
rest (what the first filter drops ranks last), each tier is ordered by the weighted sum of
the scorers' [0, 1] scores, and the picker breaks ties."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from pydantic import Field, model_validator

from meshllm.core.config import InvalidSettings, Section
from meshllm.core.proto.mesh.v1 import common_pb2 as pb

from .base import Filter, Picker, ReplicaStats, RouteRequest, Scorer
from .filters import FreeSlotFilter, HealthyFilter
from .pickers import MaxScorePicker
from .scorers import QueueScorer, SessionAffinityScorer

FILTERS: dict[str, type] = {"healthy-filter": HealthyFilter, "free-slot-filter": FreeSlotFilter}
SCORERS: dict[str, type] = {
    "queue-scorer": QueueScorer,
    "session-affinity-scorer": SessionAffinityScorer,
}
PICKERS: dict[str, type] = {"max-score-picker": MaxScorePicker}
KINDS = {**FILTERS, **SCORERS, **PICKERS}


class PluginSpec(Section):
    type: str
    name: str = ""  # defaults to the type
    params: dict[str, Any] = Field(default_factory=dict)

    @property
    def ref(self) -> str:
        return self.name or self.type


class ProfileEntry(Section):
    plugin_ref: str
    weight: float = Field(1.0, ge=0, description="a scorer's weight (filters and pickers: unused)")


def _default_plugins() -> list[PluginSpec]:
    return [PluginSpec(type=t) for t in (
        "healthy-filter", "free-slot-filter", "queue-scorer", "session-affinity-scorer",
        "max-score-picker",
    )]  # fmt: skip


def _default_profile() -> list[ProfileEntry]:
    return [
        ProfileEntry(plugin_ref="healthy-filter"),
        ProfileEntry(plugin_ref="free-slot-filter"),
        # affinity outweighs any queue difference: a session stays put until its replica has
        # no free slot (free-slot-filter) or is cooling down after a failure (healthy-filter)
        ProfileEntry(plugin_ref="session-affinity-scorer", weight=3),
        ProfileEntry(plugin_ref="queue-scorer", weight=2),
        ProfileEntry(plugin_ref="max-score-picker"),
    ]


class RoutingSettings(Section):
    plugins: list[PluginSpec] = Field(default_factory=_default_plugins)
    profile: list[ProfileEntry] = Field(default_factory=_default_profile)
    cooldown_s: float = Field(5.0, ge=0, description="a failed replica's first cooldown")
    max_cooldown_s: float = Field(120.0, ge=0, description="the longest, after failures in a row")

    @model_validator(mode="after")
    def _builds(self) -> RoutingSettings:
        try:
            build_profile(self)
        except InvalidSettings as exc:
            raise ValueError(exc.message) from None
        return self


class Profile:
    def __init__(
        self,
        filters: Sequence[Filter],
        scorers: Sequence[tuple[Scorer, float]],
        picker: Picker,
    ) -> None:
        self.filters = list(filters)
        self.scorers = list(scorers)
        self.picker = picker

    def run(
        self,
        request: RouteRequest,
        replicas: Sequence[pb.Endpoint],
        stats: ReplicaStats,
        now: float,
    ) -> list[pb.Endpoint]:
        if len(replicas) < 2:  # nothing to choose between
            return list(replicas)
        tiers: list[list[pb.Endpoint]] = []
        preferred = list(replicas)
        for step in self.filters:
            kept = step.filter(request, preferred, stats, now)
            kept_ids = {e.instance_id for e in kept}
            tiers.append([e for e in preferred if e.instance_id not in kept_ids])
            preferred = kept
        tiers.append(preferred)
        ranked: list[pb.Endpoint] = []
        for tier in reversed(tiers):
            if tier:
                ranked += self.picker.order(list(zip(self._scores(request, tier, stats, now),
                                                     tier, strict=True)))  # fmt: skip
        return ranked

    def _scores(
        self, request: RouteRequest, tier: list[pb.Endpoint], stats: ReplicaStats, now: float
    ) -> list[float]:
        total = [0.0] * len(tier)
        for scorer, weight in self.scorers:
            for i, score in enumerate(scorer.score(request, tier, stats, now)):
                total[i] += weight * min(1.0, max(0.0, score))
        return total


def build_profile(settings: RoutingSettings, rng: random.Random | None = None) -> Profile:
    specs: dict[str, PluginSpec] = {}
    for spec in settings.plugins:
        if spec.type not in KINDS:
            raise InvalidSettings(
                f"unknown routing plugin type {spec.type!r}; known: {', '.join(sorted(KINDS))}"
            )
        if spec.ref in specs:
            raise InvalidSettings(f"routing plugin {spec.ref!r} is defined twice")
        specs[spec.ref] = spec
    filters: list[Filter] = []
    scorers: list[tuple[Scorer, float]] = []
    pickers: list[Picker] = []
    for entry in settings.profile:
        spec = specs.get(entry.plugin_ref)
        if spec is None:
            raise InvalidSettings(
                f"the routing profile names {entry.plugin_ref!r}, which no plugin defines"
            )
        plugin = _instantiate(spec, rng)
        if spec.type in FILTERS:
            filters.append(plugin)
        elif spec.type in SCORERS:
            scorers.append((plugin, entry.weight))
        else:
            pickers.append(plugin)
    if len(pickers) != 1:
        raise InvalidSettings(f"the routing profile needs exactly one picker, not {len(pickers)}")
    return Profile(filters, scorers, pickers[0])


def _instantiate(spec: PluginSpec, rng: random.Random | None) -> Any:
    params = dict(spec.params)
    if spec.type in PICKERS:
        params.setdefault("rng", rng)
    try:
        return KINDS[spec.type](**params)
    except TypeError as exc:
        raise InvalidSettings(f"routing plugin {spec.ref!r}: bad params {spec.params}") from exc
