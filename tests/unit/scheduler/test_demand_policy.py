"""The demand policy (scheduler/demand.py) on synthetic meshes, and what placement does with
the replicas it asks for."""

from __future__ import annotations

import pytest

from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.scheduler.demand import (
    ModelDemand,
    Replicas,
    mesh_replicas,
    pins_by_model,
    placed_replicas,
    traffic_by_model,
)
from meshllm.scheduler.placement import Want, plan, wants_from
from meshllm.scheduler.settings import DemandSettings, PlacementSettings

GiB = 2**30
POLICY = DemandSettings(busy_rpm=20, hot_factor=3, dwell_s=60, max_replicas=4)
NOW = 10_000.0
LONG_AGO = int(NOW - 3600)
JUST_NOW = int(NOW - 5)
SETTINGS = PlacementSettings(default_context=4096, headroom_bytes=0, headroom_fraction=0.0)


def decide(
    rpm: dict[str, float], placed: dict[str, Replicas], now: float = NOW
) -> dict[str, tuple[int, str]]:
    """A node pins each model that has a placed pinned replica."""
    traffic = {
        m: ModelDemand(m, r, pins=placed[m].pinned if m in placed else 0) for m, r in rpm.items()
    }
    return {m: (d.replicas, d.why) for m, d in mesh_replicas(traffic, placed, POLICY, now).items()}


@pytest.mark.parametrize(
    ("rpm", "placed", "wanted", "why"),
    [
        # an unserved model with live demand: a standby starts it
        ({"a": 1}, {}, 1, "no node serves it"),
        # a pinned replica serves it and it is cool: the mesh adds nothing
        ({"a": 5}, {"a": Replicas(pinned=1)}, 0, "5.0 requests/min over 1 replica"),
        # hot on its own: 30/min on one replica, busy at 20
        ({"a": 30}, {"a": Replicas(mesh=1, newest_mesh_unix=LONG_AGO)}, 2, "hot"),
        # hot, but its last replica came moments ago: wait out the dwell time
        ({"a": 30}, {"a": Replicas(mesh=1, newest_mesh_unix=JUST_NOW)}, 1, "waiting 60s"),
        # hot at the cap: 4 replicas at most
        ({"a": 900}, {"a": Replicas(pinned=1, mesh=3, newest_mesh_unix=LONG_AGO)}, 3, "cap of 4"),
        # cooled: 3 mesh replicas for 10/min, 10/2 = 5 < 20/2: one fewer
        ({"a": 10}, {"a": Replicas(mesh=3, newest_mesh_unix=LONG_AGO)}, 2, "cooled"),
        # cooled but just changed: keep
        ({"a": 10}, {"a": Replicas(mesh=3, newest_mesh_unix=JUST_NOW)}, 3, "waiting"),
        # never below the base: no traffic at all, one replica stays while the record lives
        ({"a": 0}, {"a": Replicas(mesh=1, newest_mesh_unix=LONG_AGO)}, 1, "0.0 requests/min"),
        # pinned and the mesh's extra cooled: back to the pin alone
        ({"a": 4}, {"a": Replicas(pinned=1, mesh=1, newest_mesh_unix=LONG_AGO)}, 0, "cooled"),
    ],
)
def test_the_policy_for_one_model(
    rpm: dict[str, float], placed: dict[str, Replicas], wanted: int, why: str
) -> None:
    got, reason = decide(rpm, placed)["a"]
    assert got == wanted and why in reason


def test_a_model_much_hotter_than_the_coolest_gets_another_replica() -> None:
    one = Replicas(mesh=1, newest_mesh_unix=LONG_AGO)
    # busy_rpm is high here: only the comparison with the coolest model can make one hot
    policy = DemandSettings(busy_rpm=1000, hot_factor=3, dwell_s=60, max_replicas=4)
    traffic = {m: ModelDemand(m, r) for m, r in {"hot": 90, "cool": 20, "warm": 50}.items()}
    got = mesh_replicas(traffic, dict.fromkeys(traffic, one), policy, NOW)
    assert {m: d.replicas for m, d in got.items()} == {"hot": 1, "cool": 1, "warm": 1}
    policy = DemandSettings(busy_rpm=10, hot_factor=3, dwell_s=60, max_replicas=4)
    got = mesh_replicas(traffic, dict.fromkeys(traffic, one), policy, NOW)
    # hot: 90 >= 3 x 20; warm: 50 < 60; cool: 20 < 3 x 50
    assert {m: d.replicas for m, d in got.items()} == {"hot": 2, "cool": 1, "warm": 1}


def test_a_pinned_model_gets_no_mesh_replica_while_its_pin_lives() -> None:
    # its pinned replica is not placed (no room), yet the pin stands: the mesh adds none,
    # so a node that comes back never finds its model doubled
    traffic = {"a": ModelDemand("a", 5, pins=1)}
    assert mesh_replicas(traffic, {}, POLICY, NOW)["a"].replicas == 0


@pytest.mark.parametrize("rpm", [0.5, 7, 19.9, 20, 21, 39, 40, 41, 59, 61, 200, 5000])
@pytest.mark.parametrize("pinned", [0, 1])
def test_hysteresis_no_change_undoes_itself(rpm: float, pinned: int) -> None:
    """Whatever one decision does, the next one (after the dwell) does not undo it."""
    placed = Replicas(pinned=pinned, mesh=1, newest_mesh_unix=LONG_AGO)
    for _ in range(6):
        first = decide({"a": rpm}, {"a": placed})["a"][0]
        after = Replicas(pinned=pinned, mesh=first, newest_mesh_unix=LONG_AGO)
        second = decide({"a": rpm}, {"a": after})["a"][0]
        if first > placed.mesh:
            assert second >= first
        if first < placed.mesh:
            assert second <= first
        placed = after


def test_traffic_is_summed_over_gateways_and_pins_are_not_traffic() -> None:
    records = [
        pb.Demand(model="a", origin="gw1", requests_per_minute=3, last_request_unix=5),
        pb.Demand(model="a", origin="gw2", requests_per_minute=4, last_request_unix=9),
        pb.Demand(model="a", origin="n1", pinned=True),
        pb.Demand(model="b", origin="n1", pinned=True),
    ]
    assert traffic_by_model(records) == {"a": ModelDemand("a", 7, 9, 2, pins=1)}


@pytest.mark.parametrize("rate", [float("nan"), float("inf"), -5.0])
def test_a_broken_rate_in_a_record_counts_as_none(rate: float) -> None:
    records = [
        pb.Demand(model="a", origin="gw1", requests_per_minute=rate),
        pb.Demand(model="a", origin="gw2", requests_per_minute=3),
    ]
    assert traffic_by_model(records)["a"].requests_per_minute == 3


def test_placed_replicas_count_groups_not_assignments() -> None:
    split = [
        pb.Assignment(id="h", group_id="g1", model="a", created_unix=50),
        pb.Assignment(id="p", group_id="g1", model="a", created_unix=50),
    ]
    others = [
        pb.Assignment(id="s", group_id="s", model="a", created_unix=70),
        pb.Assignment(id="pin", group_id="pin", model="a", origin="n1", created_unix=90),
    ]
    assert placed_replicas([*split, *others]) == {"a": Replicas(1, 2, 70)}


def worker(node: str, budget_gib: float) -> pb.WorkerRecord:
    return pb.WorkerRecord(
        node=node,
        worker_id="gpu0",
        device=pb.Device(id="gpu0", memory_budget_bytes=int(budget_gib * GiB)),
        rpc_version="7.0.0",
    )


def entry(name: str, size_gib: float) -> pb.CatalogEntry:
    return pb.CatalogEntry(
        name=name, facts=pb.ModelFacts(file_size_bytes=int(size_gib * GiB), context_length=4096)
    )


def test_mesh_wants_come_after_pins_hottest_first() -> None:
    records = [pb.Demand(model=m, origin="gw") for m in ("a", "b")]
    records.append(pb.Demand(model="c", origin="n1", pinned=True))
    got = wants_from(records, {"b": 2, "a": 1})
    assert got == [Want("c", "n1", 0), Want("b", "", 0, replicas=2), Want("a", "", 0)]


def test_extra_replicas_go_to_other_devices_and_the_rest_is_wanted_next() -> None:
    result = plan(
        [Want("m", "", 0, replicas=3)],
        {"m": entry("m", 1)},
        {},
        [worker("a", 4), worker("b", 4)],
        {},
        SETTINGS,
    )
    assert sorted(w.node for w, _ in result.create) == ["a", "b"]
    status = result.status["m"]
    assert status.placed and status.replicas == 2
    assert len(status.next) == 1 and "serves it already" in status.next[0]


def test_every_first_replica_comes_before_any_extra() -> None:
    # two devices: the hot model's extra waits while the unserved model gets its first
    result = plan(
        [Want("hot", "", 0, replicas=2), Want("new", "", 0)],
        {"hot": entry("hot", 3), "new": entry("new", 3)},
        {},
        [worker("a", 4), worker("b", 4)],
        {},
        SETTINGS,
    )
    assert sorted(a.model for _, a in result.create) == ["hot", "new"]
    assert result.status["new"].placed and result.status["hot"].next


def test_fewer_replicas_wanted_drops_only_the_surplus() -> None:
    kept = {
        f"k{n}": pb.Assignment(
            id=f"r{n}", group_id=f"r{n}", model="m", node=n, worker_id="gpu0", memory_bytes=GiB
        )
        for n in ("a", "b", "c")
    }
    workers = [worker(n, 4) for n in ("a", "b", "c")]
    result = plan([Want("m", "", 0, replicas=2)], {"m": entry("m", 1)}, {}, workers, kept, SETTINGS)
    assert result.delete == ["kc"] and not result.create
    assert [k for k, _ in result.keep] == ["ka", "kb"] and result.status["m"].replicas == 2


def test_the_mesh_replicas_go_only_to_standby_nodes() -> None:
    # "a" pins its own model: the mesh's replica of "m" goes to the standby "b", though
    # "a" has more room; with no standby left it waits, saying why
    wants = [Want("own", "a", 0), Want("m", "", 0, replicas=2)]
    catalog = {"own": entry("own", 1), "m": entry("m", 1)}
    result = plan(wants, catalog, {}, [worker("a", 64), worker("b", 4)], {}, SETTINGS)
    assert sorted((w.node, a.model) for w, a in result.create) == [("a", "own"), ("b", "m")]
    assert "every standby device that could take it serves it" in result.status["m"].next[0]
    alone = plan(wants[1:], catalog, {}, [worker("a", 64)], {}, SETTINGS)
    assert alone.create  # no pins at all: every node is a standby
    pinned_only = plan(
        [Want("own", "a", 0), Want("m", "", 0)], catalog, {}, [worker("a", 64)], {}, SETTINGS
    )
    assert [a.model for _, a in pinned_only.create] == ["own"]
    assert not pinned_only.status["m"].placed
    assert "mesh-llm serve --standby" in pinned_only.status["m"].reasons[0]


def test_a_node_that_will_pin_a_model_is_no_standby_before_its_pin_arrives() -> None:
    # a restarted node's worker is back before its pin: it says it pins models, so the
    # mesh's replica does not land there only to be joined by the pinned one
    coming = worker("a", 64)
    coming.pins_models = True
    wants = [Want("m", "", 0, replicas=2)]
    result = plan(wants, {"m": entry("m", 1)}, {}, [coming, worker("b", 4)], {}, SETTINGS)
    assert [(w.node, a.model) for w, a in result.create] == [("b", "m")]


def test_a_demanded_model_that_fits_nowhere_says_why() -> None:
    result = plan(
        wants_from([pb.Demand(model="m", origin="gw")]),
        {"m": entry("m", 9)},
        {},
        [worker("a", 2)],
        {},
        SETTINGS,
    )
    assert not result.create and not result.status["m"].placed
    assert any("needs 9.00 GiB" in r for r in result.status["m"].reasons)


def test_a_demanded_model_too_big_for_any_standby_is_split_over_standbys() -> None:
    result = plan(
        wants_from([pb.Demand(model="m", origin="gw")]),
        {"m": entry("m", 6)},
        {},
        [worker("a", 4), worker("b", 4)],
        {},
        SETTINGS,
        lambda a, b: 1.0,
    )
    roles = sorted(a.role for _, a in result.create)
    assert roles == [pb.ASSIGNMENT_ROLE_HOST, pb.ASSIGNMENT_ROLE_PEER]
    assert result.status["m"].placed and result.status["m"].replicas == 1


def test_pins_count_replicas_not_records() -> None:
    # both workers of node "a" publish its pin of "m"; "b" pins "n" to two of its GPUs
    records = [
        pb.Demand(model="m", origin="a", pinned=True),
        pb.Demand(model="m", origin="a", pinned=True),
        pb.Demand(model="n", origin="b", pinned=True, worker_id="gpu0"),
        pb.Demand(model="n", origin="b", pinned=True, worker_id="gpu1"),
        pb.Demand(model="n", origin="gw", requests_per_minute=5),
    ]
    assert pins_by_model(records) == {"m": 1, "n": 2}
    assert traffic_by_model(records)["n"].pins == 2
