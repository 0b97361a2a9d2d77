"""The routing plugins and the profile that runs them: a table per plugin, then the default
profile's behaviour, the policy-as-data errors, and session keys."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from meshllm.core.config import InvalidSettings
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.gateway.routing import Router, RouteRequest, RoutingSettings, session_key
from meshllm.gateway.routing.base import ReplicaStats
from meshllm.gateway.routing.filters import FreeSlotFilter, HealthyFilter
from meshllm.gateway.routing.pickers import MaxScorePicker
from meshllm.gateway.routing.profile import PluginSpec, ProfileEntry, build_profile
from meshllm.gateway.routing.scorers import QueueScorer, SessionAffinityScorer

NOW = 1000.0
PLAIN = RouteRequest("m")


def replicas(*ids: str, slots: int = 0) -> list[pb.Endpoint]:
    return [pb.Endpoint(instance_id=i, slots=slots) for i in ids]


def stats_with(
    in_flight: dict[str, int] | None = None, cooling: tuple[str, ...] = ()
) -> ReplicaStats:
    stats = ReplicaStats(base_s=5, max_s=60, in_flight=dict(in_flight or {}))
    for instance_id in cooling:
        stats.started(instance_id)
        stats.finished(instance_id, failed=True, now=NOW)
    return stats


def ids(endpoints: list[pb.Endpoint]) -> list[str]:
    return [e.instance_id for e in endpoints]


# ---------------------------------------------------------------------------------------------
# Plugins


@pytest.mark.parametrize(
    ("cooling", "now", "kept"),
    [
        ((), NOW, ["a", "b", "c"]),
        (("b",), NOW, ["a", "c"]),
        (("b",), NOW + 4.9, ["a", "c"]),
        (("b",), NOW + 5.1, ["a", "b", "c"]),  # the first cooldown is base_s
        (("a", "b", "c"), NOW, []),
    ],
)
def test_healthy_filter(cooling: tuple[str, ...], now: float, kept: list[str]) -> None:
    stats = stats_with(cooling=cooling)
    assert ids(HealthyFilter().filter(PLAIN, replicas("a", "b", "c"), stats, now)) == kept


@pytest.mark.parametrize(
    ("slots", "in_flight", "kept"),
    [
        (2, {}, ["a", "b"]),
        (2, {"a": 1}, ["a", "b"]),
        (2, {"a": 2}, ["b"]),
        (2, {"a": 3, "b": 2}, []),
        (0, {"a": 50}, ["a", "b"]),  # slots unknown: counts as free
    ],
)
def test_free_slot_filter(slots: int, in_flight: dict[str, int], kept: list[str]) -> None:
    stats = stats_with(in_flight)
    result = FreeSlotFilter().filter(PLAIN, replicas("a", "b", slots=slots), stats, NOW)
    assert ids(result) == kept


@pytest.mark.parametrize(
    ("queues", "scores"),
    [
        ((10, 5, 0), [0.0, 0.5, 1.0]),
        ((3, 3, 3), [1.0, 1.0, 1.0]),  # equal queues: neutral
        ((0, 4), [1.0, 0.0]),
        ((2,), [1.0]),
    ],
)
def test_queue_scorer(queues: tuple[int, ...], scores: list[float]) -> None:
    names = [chr(ord("a") + i) for i in range(len(queues))]
    stats = stats_with(dict(zip(names, queues, strict=True)))
    assert QueueScorer().score(PLAIN, replicas(*names), stats, NOW) == scores


@pytest.mark.parametrize("session", ["", "s-1", "user:alice", "start:0f3a"])
def test_session_affinity_scorer(session: str) -> None:
    scores = SessionAffinityScorer().score(
        RouteRequest("m", session), replicas("a", "b", "c", "d"), stats_with(), NOW
    )
    if not session:
        assert scores == [1.0] * 4  # no session: neutral
    else:
        assert sorted(scores) == [0.0, 0.0, 0.0, 1.0]


def affinity_winner(session: str, names: list[str]) -> str:
    scores = SessionAffinityScorer().score(
        RouteRequest("m", session), replicas(*names), stats_with(), NOW
    )
    return names[scores.index(1.0)]


def test_affinity_moves_only_the_sessions_of_a_replica_that_leaves_or_joins() -> None:
    sessions = [f"session-{i}" for i in range(4000)]
    four = ["a", "b", "c", "d"]
    before = {s: affinity_winner(s, four) for s in sessions}
    spread = Counter(before.values())
    assert max(spread.values()) - min(spread.values()) < 250  # roughly 1/4 each

    without_c = {s: affinity_winner(s, ["a", "b", "d"]) for s in sessions}
    moved = [s for s in sessions if before[s] != without_c[s]]
    assert all(before[s] == "c" for s in moved) and len(moved) == spread["c"]

    with_e = {s: affinity_winner(s, [*four, "e"]) for s in sessions}
    moved = [s for s in sessions if before[s] != with_e[s]]
    assert all(with_e[s] == "e" for s in moved)
    assert 0.15 < len(moved) / len(sessions) < 0.25  # about 1/5 move, all to the newcomer


@pytest.mark.parametrize(
    ("scores", "first"),
    [
        ([0.0, 3.0, 1.0], ["b", "c", "a"]),
        ([5.0, 5.0, 0.0], None),  # a tie: either of the two first, "c" last
    ],
)
def test_max_score_picker(scores: list[float], first: list[str] | None) -> None:
    picker = MaxScorePicker(random.Random(2))
    scored = list(zip(scores, replicas("a", "b", "c"), strict=True))
    order = ids(picker.order(scored))
    if first is not None:
        assert order == first
    else:
        assert set(order[:2]) == {"a", "b"} and order[2] == "c"


def test_ties_spread_evenly() -> None:
    picker = MaxScorePicker(random.Random(7))
    scored = [(1.0, e) for e in replicas("a", "b", "c", "d")]
    firsts = Counter(picker.order(scored)[0].instance_id for _ in range(4000))
    assert max(firsts.values()) - min(firsts.values()) < 250


# ---------------------------------------------------------------------------------------------
# Request stats


@pytest.mark.parametrize(
    ("failures", "cooldown"), [(1, 5.0), (2, 10.0), (3, 20.0), (4, 40.0), (5, 60.0), (9, 60.0)]
)
def test_cooldown_grows_with_failures_in_a_row(failures: int, cooldown: float) -> None:
    stats = ReplicaStats(base_s=5, max_s=60)
    for _ in range(failures):
        stats.started("a")
        stats.finished("a", failed=True, now=NOW)
    assert stats.failures["a"].until == NOW + cooldown


def test_failures_long_past_are_forgotten() -> None:
    stats = stats_with(cooling=("a", "a", "a"))  # cooling until NOW + 20
    stats.started("b")
    stats.finished("b", failed=True, now=NOW + 20 + 61)
    assert list(stats.failures) == ["b"]


def test_a_success_ends_the_cooldown() -> None:
    stats = stats_with(cooling=("a", "a"))
    stats.started("a")
    stats.finished("a", failed=False, now=NOW)
    assert not stats.cooling("a", NOW) and "a" not in stats.failures


# ---------------------------------------------------------------------------------------------
# The default profile


def default_router(seed: int = 1) -> Router:
    return Router(RoutingSettings(), random.Random(seed))


def test_least_outstanding_first_without_a_session() -> None:
    router = default_router()
    a, b, c = replicas("a", "b", "c")
    for endpoint in (a, a, b):
        router.started(endpoint)
    assert ids(router.rank(PLAIN, [a, b, c])) == ["c", "b", "a"]


def test_balanced_under_load() -> None:
    """Requests that stay in flight spread over replicas within one of each other."""
    router = default_router(3)
    three = replicas("a", "b", "c")
    for _ in range(100):
        router.started(router.rank(PLAIN, three)[0])
    counts = [router.in_flight(e.instance_id) for e in three]
    assert max(counts) - min(counts) <= 1


def test_a_session_stays_put_while_its_replica_has_a_free_slot() -> None:
    router = default_router()
    four = replicas("a", "b", "c", "d", slots=4)
    request = RouteRequest("m", "conversation-1")
    home = router.rank(request, four)[0]
    for _ in range(3):  # busier than every other replica, still has a slot
        router.started(home)
    assert router.rank(request, four)[0] == home
    router.started(home)  # now full: the session goes to the idlest other replica
    ranked = router.rank(request, four)
    assert ranked[0] != home and ranked[-1] == home


def test_failed_replicas_rank_last_until_their_cooldown_ends() -> None:
    router = default_router()
    a, b = replicas("a", "b")
    router.started(a)
    router.finished(a, failed=True)
    router.started(b)
    router.started(b)
    assert ids(router.rank(PLAIN, [a, b])) == ["b", "a"]
    assert ids(router.rank(PLAIN, [a, b], now=1e12)) == ["a", "b"]


def test_cooling_ranks_below_full() -> None:
    """What the first filter drops ranks last: a full replica beats one that just failed."""
    profile = build_profile(RoutingSettings(), random.Random(1))
    stats = stats_with({"full": 1}, cooling=("failed",))
    ranked = profile.run(PLAIN, replicas("failed", "full", "free", slots=1), stats, NOW)
    assert ids(ranked) == ["free", "full", "failed"]


# ---------------------------------------------------------------------------------------------
# The policy as data


def settings(plugins: list[dict], profile: list[dict]) -> RoutingSettings:
    return RoutingSettings.model_construct(
        plugins=[PluginSpec(**p) for p in plugins],
        profile=[ProfileEntry(**p) for p in profile],
        cooldown_s=5,
        max_cooldown_s=60,
    )


PICKER = {"type": "max-score-picker"}


@pytest.mark.parametrize(
    ("plugins", "profile", "message"),
    [
        ([{"type": "magic-scorer"}], [], "unknown routing plugin type 'magic-scorer'"),
        ([PICKER], [{"plugin_ref": "queue-scorer"}], "names 'queue-scorer', which no plugin"),
        ([PICKER], [], "exactly one picker, not 0"),
        ([PICKER, {"type": "max-score-picker", "name": "p2"}],
         [{"plugin_ref": "max-score-picker"}, {"plugin_ref": "p2"}], "exactly one picker, not 2"),
        ([PICKER, PICKER], [], "'max-score-picker' is defined twice"),
        ([PICKER, {"type": "queue-scorer", "params": {"depth": 3}}],
         [{"plugin_ref": "queue-scorer"}, {"plugin_ref": "max-score-picker"}], "bad params"),
    ],
)  # fmt: skip
def test_bad_policies_are_refused_with_their_reason(
    plugins: list[dict], profile: list[dict], message: str
) -> None:
    with pytest.raises(InvalidSettings, match=message):
        build_profile(settings(plugins, profile))


def test_a_bad_policy_fails_where_settings_are_read() -> None:
    with pytest.raises(ValueError, match="exactly one picker"):
        RoutingSettings(profile=[ProfileEntry(plugin_ref="queue-scorer")])


def test_weights_come_from_the_profile() -> None:
    """Queue weight above affinity: the idle replica wins over the session's own."""
    plugins = [{"type": "queue-scorer"}, {"type": "session-affinity-scorer"}, PICKER]
    request = RouteRequest("m", "conversation-1")
    four = replicas("a", "b", "c", "d")
    home = affinity_winner("conversation-1", ["a", "b", "c", "d"])
    stats = stats_with({home: 1})
    for queue_weight, expect_home in ((1, True), (5, False)):
        profile = build_profile(settings(plugins, [
            {"plugin_ref": "queue-scorer", "weight": queue_weight},
            {"plugin_ref": "session-affinity-scorer", "weight": 3},
            {"plugin_ref": "max-score-picker"},
        ]))  # fmt: skip
        assert (profile.run(request, four, stats, NOW)[0].instance_id == home) is expect_home


# ---------------------------------------------------------------------------------------------
# Session keys

SYSTEM = {"role": "system", "content": "be brief"}
ASK = {"role": "user", "content": "hi"}
ANSWER = {"role": "assistant", "content": "hello"}
AGAIN = {"role": "user", "content": "and?"}
CHAT = "/v1/chat/completions"


@pytest.mark.parametrize(
    ("route", "first", "later", "same"),
    [
        (CHAT, {"messages": [SYSTEM, ASK]}, {"messages": [SYSTEM, ASK, ANSWER, AGAIN]}, True),
        (CHAT, {"messages": [ASK]}, {"messages": [ASK, ANSWER, AGAIN]}, True),
        (CHAT, {"messages": [ASK]}, {"messages": [AGAIN]}, False),
        (CHAT, {"messages": [SYSTEM, ASK]}, {"messages": [ASK]}, False),
        ("/v1/messages", {"system": "s", "messages": [ASK]},
         {"system": "s", "messages": [ASK, ANSWER, AGAIN]}, True),
        ("/v1/messages", {"system": "s", "messages": [ASK]}, {"messages": [ASK]}, False),
        ("/v1/completions", {"prompt": "Once upon"}, {"prompt": "Once upon a time"}, False),
        ("/v1/completions", {"prompt": "x" * 2000}, {"prompt": "x" * 2000 + "more"}, True),
        ("/v1/responses", {"input": "hi"}, {"input": "hi"}, True),
        (CHAT, {"messages": [ASK], "user": "alice"}, {"messages": [AGAIN], "user": "alice"}, True),
    ],
)  # fmt: skip
def test_session_key_follows_the_conversation(
    route: str, first: dict, later: dict, same: bool
) -> None:
    one, two = session_key(route, first, {}), session_key(route, later, {})
    assert one and two and (one == two) is same


@pytest.mark.parametrize(
    ("route", "payload", "headers", "key"),
    [
        (CHAT, {"messages": [ASK]}, {"x-session-id": "abc"}, "id:abc"),
        (CHAT, {"messages": [ASK], "user": "bob"}, {"x-session-id": "abc"}, "id:abc"),
        (CHAT, {"messages": [ASK], "user": "bob"}, {}, "user:bob"),
        ("/v1/embeddings", {"input": "x"}, {}, ""),
        (CHAT, {"messages": "not a list"}, {}, ""),
    ],
)
def test_session_key_sources(route: str, payload: dict, headers: dict, key: str) -> None:
    assert session_key(route, payload, headers) == key
