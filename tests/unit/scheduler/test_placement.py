from __future__ import annotations

import pytest

from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.scheduler.placement import (
    Want,
    Worker,
    choose_worker,
    context_for,
    memory_needed,
    plan,
    standby_workers,
    wants_from,
)
from meshllm.scheduler.settings import PlacementSettings

GiB = 2**30
SETTINGS = PlacementSettings(default_context=4096, headroom_bytes=0, headroom_fraction=0.0)


def worker(
    node: str, budget_gib: float, *, draining: bool = False, rpc: str = "7.0.0"
) -> pb.WorkerRecord:
    return pb.WorkerRecord(
        node=node,
        worker_id="gpu0",
        lease_id=hash(node) & 0xFFFF,
        draining=draining,
        device=pb.Device(id="gpu0", memory_budget_bytes=int(budget_gib * GiB)),
        rpc_version=rpc,
    )


def rtts(table: dict[str, float]):  # type: ignore[no-untyped-def]
    """Symmetric round-trip times between nodes, keyed by the two names joined ("afar");
    missing: not measured."""
    return lambda a, b: table.get(a + b, table.get(b + a))


def wants(*models: str) -> list[Want]:
    return [Want(m, "", 0) for m in models]


def entry(name: str, size_gib: float, kv_per_token: int = 0, ctx: int = 8192) -> pb.CatalogEntry:
    return pb.CatalogEntry(
        name=name,
        facts=pb.ModelFacts(
            file_size_bytes=int(size_gib * GiB), kv_bytes_per_token=kv_per_token, context_length=ctx
        ),
    )


@pytest.mark.parametrize(
    ("wanted", "facts_ctx", "expected"),
    [(0, 8192, 4096), (2048, 8192, 2048), (0, 1024, 1024), (16384, 8192, 8192), (0, 0, 4096)],
)
def test_context(wanted: int, facts_ctx: int, expected: int) -> None:
    assert context_for(pb.ModelFacts(context_length=facts_ctx), wanted, SETTINGS) == expected


def test_memory_counts_weights_kv_and_headroom() -> None:
    facts = pb.ModelFacts(file_size_bytes=1000, kv_bytes_per_token=10)
    settings = PlacementSettings(headroom_bytes=500, headroom_fraction=0.1)
    assert memory_needed(facts, 100, settings) == 1000 + 1000 + 500 + 100


def test_goes_to_the_worker_with_most_room() -> None:
    result = plan(
        wants("m"), {"m": entry("m", 2)}, {}, [worker("a", 4), worker("b", 8)], {}, SETTINGS
    )
    assert [(w.node, a.model) for w, a in result.create] == [("b", "m")]
    assert result.status["m"].placed


def test_nothing_fits_says_why_for_every_worker() -> None:
    workers = [worker("a", 1), worker("b", 64, draining=True)]
    result = plan(wants("big"), {"big": entry("big", 2)}, {}, workers, {}, SETTINGS)
    assert not result.create
    reasons = list(result.status["big"].reasons)
    assert not result.status["big"].placed
    assert any(r.startswith("a/gpu0: needs 2.00 GiB, has 1.00 GiB") for r in reasons)
    assert "b/gpu0: draining" in reasons


def test_kv_cache_counts_toward_fit() -> None:
    # 1 GiB weights + 4096 tokens x 256 KiB = 2 GiB: does not fit in 1.5 GiB
    catalog = {"m": entry("m", 1, kv_per_token=256 * 1024)}
    result = plan(wants("m"), catalog, {}, [worker("a", 1.5)], {}, SETTINGS)
    assert not result.create


def test_models_share_a_worker_until_it_is_full() -> None:
    catalog = {n: entry(n, 3) for n in ("x", "y", "z")}
    result = plan(wants("x", "y", "z"), catalog, {}, [worker("a", 7)], {}, SETTINGS)
    assert sorted(a.model for _, a in result.create) == ["x", "y"]
    assert not result.status["z"].placed


def test_existing_assignment_is_kept_and_counted() -> None:
    kept = pb.Assignment(id="1", model="x", node="a", worker_id="gpu0", memory_bytes=6 * GiB)
    catalog = {"x": entry("x", 6), "y": entry("y", 2)}
    result = plan(wants("x", "y"), catalog, {}, [worker("a", 7)], {"k1": kept}, SETTINGS)
    assert result.keep == [("k1", kept)] and not result.create and not result.delete
    assert not result.status["y"].placed


def test_unwanted_and_orphaned_assignments_are_deleted() -> None:
    stale = pb.Assignment(id="1", model="gone", node="a", worker_id="gpu0")
    orphan = pb.Assignment(id="2", model="x", node="dead", worker_id="gpu0")
    assignments = {"k1": stale, "k2": orphan}
    result = plan(wants("x"), {"x": entry("x", 1)}, {}, [worker("a", 4)], assignments, SETTINGS)
    assert sorted(result.delete) == ["k1", "k2"]
    assert [(w.node, a.model) for w, a in result.create] == [("a", "x")]


def test_unknown_model_is_pending_with_a_reason() -> None:
    result = plan(wants("nope"), {}, {}, [worker("a", 4)], {}, SETTINGS)
    assert "not in the catalog" in result.status["nope"].reasons[0]


def test_no_workers() -> None:
    result = plan(wants("m"), {"m": entry("m", 1)}, {}, [], {}, SETTINGS)
    assert list(result.status["m"].reasons) == ["no worker in the mesh"]


def test_assignment_ids_are_stable() -> None:
    catalog, workers = {"m": entry("m", 1)}, [worker("a", 4)]
    first = plan(wants("m"), catalog, {}, workers, {}, SETTINGS).create[0][1].id
    assert plan(wants("m"), catalog, {}, workers, {}, SETTINGS).create[0][1].id == first


def local(name: str, size_gib: float) -> pb.CatalogEntry:
    """A model registered from a file: it runs only where a registry holds that file."""
    e = entry(name, size_gib)
    e.source.kind = pb.MODEL_SOURCE_KIND_PATH
    return e


def test_a_file_model_goes_only_where_its_file_is() -> None:
    result = plan(
        wants("m"),
        {"m": local("m", 1)},
        {"m": {"a"}},
        [worker("a", 2), worker("b", 64)],
        {},
        SETTINGS,
    )
    assert [w.node for w, _ in result.create] == ["a"]
    assert "b/gpu0: does not have the file" in result.status["m"].reasons
    nowhere = plan(wants("m"), {"m": local("m", 1)}, {}, [worker("b", 64)], {}, SETTINGS)
    assert not nowhere.create and not nowhere.status["m"].placed


def with_projector(e: pb.CatalogEntry) -> pb.CatalogEntry:
    e.projector.kind = pb.MODEL_SOURCE_KIND_PATH
    return e


@pytest.mark.parametrize(
    ("model", "holders", "want", "placed_on"),
    [
        (local("m", 8), {"a"}, Want("m", "", 0), "b"),  # the holder is too small: b copies
        (local("m", 1), {"a"}, Want("m", "", 0), "a"),  # the holder has room: no copy
        (local("m", 8), set(), Want("m", "", 0), None),  # nobody holds the file any more
        (with_projector(local("m", 8)), {"a"}, Want("m", "", 0), None),  # its projector too
        (local("m", 8), {"a"}, Want("m", "", 0, split=True), None),  # a split asks for peers
    ],
)
def test_a_device_without_the_file_takes_a_copy_only_when_no_holder_has_room(
    model: pb.CatalogEntry, holders: set[str], want: Want, placed_on: str | None
) -> None:
    result = plan([want], {"m": model}, {"m": holders}, [worker("a", 2), worker("b", 64)], {},
                  SETTINGS)  # fmt: skip
    created = [(w.node, a.role) for w, a in result.create]
    if placed_on is None:
        assert all(role != pb.ASSIGNMENT_ROLE_SOLO for _, role in created), created
    else:
        assert created == [(placed_on, pb.ASSIGNMENT_ROLE_SOLO)]
        copied = any("runs a copy" in r for r in result.status["m"].reasons)
        assert copied is (placed_on not in holders)


def test_a_kept_replica_still_says_why_it_is_where_it_is() -> None:
    catalog, files = {"m": local("m", 8)}, {"m": {"a"}}
    workers = [worker("a", 2), worker("b", 64)]
    first = plan(wants("m"), catalog, files, workers, {}, SETTINGS)
    [(_, made)] = first.create
    again = plan(wants("m"), catalog, files, workers, {"k": made}, SETTINGS)
    assert not again.create and not again.delete
    assert list(again.status["m"].reasons) == list(first.status["m"].reasons) != []
    assert "b runs a copy of it" in again.status["m"].reasons[0]


def test_each_pin_gets_a_replica_on_its_own_node() -> None:
    demands = [
        pb.Demand(model="m", origin="a", pinned=True),
        pb.Demand(model="m", origin="b", pinned=True),
        pb.Demand(model="m", origin="b", pinned=True, context=2048),
    ]
    got = wants_from(demands)
    assert got == [Want("m", "a", 0), Want("m", "b", 2048)]
    result = plan(
        got,
        {"m": entry("m", 1)},
        {},
        [worker("a", 2), worker("b", 2), worker("c", 64)],
        {},
        SETTINGS,
    )
    assert sorted((a.origin, w.node) for w, a in result.create) == [("a", "a"), ("b", "b")]
    assert len({a.id for _, a in result.create}) == 2


def test_a_pin_whose_node_is_full_goes_elsewhere() -> None:
    result = plan(
        [Want("m", "a", 0)],
        {"m": entry("m", 4)},
        {},
        [worker("a", 2), worker("b", 8)],
        {},
        SETTINGS,
    )
    assert [w.node for w, _ in result.create] == ["b"]


@pytest.mark.parametrize(
    ("home_files", "home_budget_gib", "goes_home"),
    [
        ({"a", "b"}, 8, True),  # its node is back with the file and room: home it goes
        ({"a"}, 8, False),  # its node still lacks the file
        ({"a", "b"}, 0.5, False),  # its node has no room for it
    ],
)
def test_a_pin_placed_away_goes_home_when_its_node_can_take_it(
    home_files: set[str], home_budget_gib: float, goes_home: bool
) -> None:
    """b's pin ran on a while b was cut off (b had lost its file record); b is back."""
    away = plan(
        [Want("m", "b", 0)], {"m": local("m", 1)}, {"m": {"a"}}, [worker("a", 8)], {}, SETTINGS
    )
    [(placed_on, assignment)] = away.create
    assert placed_on.node == "a"
    now = plan(
        [Want("m", "b", 0)],
        {"m": local("m", 1)},
        {"m": home_files},
        [worker("a", 8), worker("b", home_budget_gib)],
        {"k-away": assignment},
        SETTINGS,
    )
    if goes_home:
        assert now.delete == ["k-away"] and [w.node for w, _ in now.create] == ["b"]
    else:
        assert [k for k, _ in now.keep] == ["k-away"] and not now.create and not now.delete


def test_mesh_demand_from_requests_is_not_pinned() -> None:
    assert wants_from([pb.Demand(model="m", origin="requests")]) == [Want("m", "", 0)]


def member(
    node: str, role: int, group: str = "g1", peers: tuple[str, ...] = (), model: str = "m"
) -> pb.Assignment:
    return pb.Assignment(
        id=f"{group}-{node}",
        group_id=group,
        model=model,
        node=node,
        worker_id="gpu0",
        role=role,
        memory_bytes=GiB,
        peers=[pb.PeerShare(node=p, worker_id="gpu0", share=0.5) for p in peers],
    )


HOST, PEER, SOLO = pb.ASSIGNMENT_ROLE_HOST, pb.ASSIGNMENT_ROLE_PEER, pb.ASSIGNMENT_ROLE_SOLO
SPLIT = {
    "k-a": member("a", HOST, peers=("b", "c")),
    "k-b": member("b", PEER),
    "k-c": member("c", PEER),
}


@pytest.mark.parametrize(
    ("assignments", "alive", "kept"),
    [
        (SPLIT, "abc", {"k-a", "k-b", "k-c"}),  # whole: kept whole
        (SPLIT, "ab", set()),  # a peer's worker is gone: the whole split goes
        (SPLIT, "bc", set()),  # the host's worker is gone
        ({k: v for k, v in SPLIT.items() if k != "k-c"}, "abc", set()),  # a named peer missing
        ({**SPLIT, "k-d": member("d", PEER)}, "abcd", set()),  # a peer the host does not name
        ({"k-b": SPLIT["k-b"], "k-c": SPLIT["k-c"]}, "abc", set()),  # peers without a host
        (
            {"old": pb.Assignment(id="old", model="m", node="a", worker_id="gpu0", role=SOLO)},
            "a",
            {"old"},
        ),
    ],
)
def test_groups_are_kept_or_dropped_whole(
    assignments: dict[str, pb.Assignment], alive: str, kept: set[str]
) -> None:
    workers = [worker(node, 2) for node in alive]
    near = rtts({"ab": 1, "ac": 1, "ad": 1})
    result = plan(wants("m"), {"m": entry("m", 8)}, {}, workers, assignments, SETTINGS, near)
    assert {k for k, _ in result.keep} == kept
    assert set(result.delete) == set(assignments) - kept


def test_a_second_group_for_a_served_want_goes() -> None:
    first = member("a", SOLO, group="g1")
    second = member("b", SOLO, group="g2")
    result = plan(
        wants("m"),
        {"m": entry("m", 1)},
        {},
        [worker("a", 4), worker("b", 4)],
        {"k1": first, "k2": second},
        SETTINGS,
    )
    assert [k for k, _ in result.keep] == ["k1"] and result.delete == ["k2"]


def test_a_solo_placement_is_a_group_of_one() -> None:
    result = plan(wants("m"), {"m": entry("m", 1)}, {}, [worker("a", 4)], {}, SETTINGS)
    [(_, assignment)] = result.create
    assert assignment.group_id == assignment.id and assignment.role == SOLO


@pytest.mark.parametrize(("rtt_ac", "kept"), [(5.0, True), (80.0, False), (None, False)])
def test_a_split_whose_peer_drifted_out_of_reach_is_dropped(
    rtt_ac: float | None, kept: bool
) -> None:
    table = {"ab": 1.0} | ({"ac": rtt_ac} if rtt_ac is not None else {})
    workers = [worker(n, 2) for n in "abc"]
    result = plan(wants("m"), {"m": entry("m", 8)}, {}, workers, SPLIT, SETTINGS, rtts(table))
    assert bool(result.keep) is kept


def roles(result_create: list[tuple[pb.WorkerRecord, pb.Assignment]]) -> dict[str, int]:
    return {a.node: a.role for _, a in result_create}


def test_a_model_that_fits_one_worker_is_never_split() -> None:
    workers = [worker("a", 4), worker("b", 4)]
    result = plan(wants("m"), {"m": entry("m", 3)}, {}, workers, {}, SETTINGS, rtts({"ab": 1}))
    assert roles(result.create) == {"a": SOLO}


def test_a_model_too_big_for_any_worker_is_split_as_one_group() -> None:
    workers = [worker("a", 6), worker("b", 2), worker("c", 4)]
    result = plan(
        wants("m"), {"m": entry("m", 9)}, {}, workers, {}, SETTINGS, rtts({"ab": 1, "ac": 2})
    )
    assert roles(result.create) == {"c": PEER, "a": HOST}
    host = result.create[-1][1]
    peer = result.create[0][1]
    assert {a.group_id for _, a in result.create} == {host.id}
    assert [(p.node, p.assignment_id) for p in host.peers] == [("c", peer.id)]
    assert host.share == pytest.approx(0.6) and peer.share == pytest.approx(0.4)
    assert host.memory_bytes + peer.memory_bytes == pytest.approx(9 * GiB, abs=2)
    assert result.status["m"].placed and "split over 2 devices" in result.status["m"].reasons[0]


def test_a_split_is_never_half_created_and_says_why() -> None:
    workers = [worker("a", 4), worker("b", 4), worker("far", 4)]
    table = rtts({"ab": 1, "afar": 120})
    result = plan(wants("m"), {"m": entry("m", 10)}, {}, workers, {}, SETTINGS, table)
    assert result.create == []
    reasons = list(result.status["m"].reasons)
    assert not result.status["m"].placed
    assert any("split: needs 10.00 GiB" in r for r in reasons)
    assert any("far/gpu0: 120 ms from a, over the 80 ms cap" in r for r in reasons)


def test_the_host_holds_the_file_and_peers_need_not() -> None:
    local = pb.CatalogEntry(
        name="m",
        source=pb.ModelSource(kind=pb.MODEL_SOURCE_KIND_PATH),
        facts=pb.ModelFacts(file_size_bytes=9 * GiB),
    )
    workers = [worker("a", 4), worker("b", 6)]
    files = {"m": {"a"}}
    result = plan(wants("m"), {"m": local}, files, workers, {}, SETTINGS, rtts({"ab": 1}))
    assert roles(result.create) == {"b": PEER, "a": HOST}


def test_a_forced_split_splits_what_fits_and_waits_for_peers() -> None:
    forced = [Want("m", "", 0, split=True)]
    catalog = {"m": entry("m", 2)}
    result = plan(
        forced, catalog, {}, [worker("a", 4), worker("b", 4)], {}, SETTINGS, rtts({"ab": 1})
    )
    assert roles(result.create) == {"b": PEER, "a": HOST}
    result = plan(forced, catalog, {}, [worker("a", 4), worker("b", 4, rpc="")], {}, SETTINGS)
    assert result.create == [] and not result.status["m"].placed
    assert "split: b/gpu0: cannot run an rpc-server" in result.status["m"].reasons


def test_a_split_wants_demand_flag() -> None:
    demand = [pb.Demand(model="m", origin="n1", pinned=True, split=True)]
    assert wants_from(demand) == [Want("m", "n1", 0, split=True)]


# --- bandwidth: among the workers a model fits, the fastest memory wins ---


def measured(
    node: str, budget_gib: float, gbps: float, *, worker_id: str = "gpu0", draining: bool = False
) -> pb.WorkerRecord:
    """A worker whose device has `gbps` of measured memory bandwidth (0: not measured)."""
    return pb.WorkerRecord(
        node=node,
        worker_id=worker_id,
        draining=draining,
        device=pb.Device(
            id=worker_id, memory_budget_bytes=int(budget_gib * GiB), memory_bandwidth_gbps=gbps
        ),
    )


@pytest.mark.parametrize(
    ("workers", "need_gib", "used_gib", "chosen"),
    [
        pytest.param(
            [("a", 8, 0), ("b", 24, 0)], 4, {}, "b", id="none measured: most room, as before"
        ),
        pytest.param(
            [("a", 8, 3350), ("b", 24, 936)], 4, {}, "a", id="faster memory beats more room"
        ),
        pytest.param([("a", 8, 0), ("b", 6, 936)], 4, {}, "b", id="measured beats not measured"),
        pytest.param(
            [("a", 8, 3350), ("b", 24, 936)], 10, {}, "b", id="the fastest that cannot fit is not"
        ),
        pytest.param(
            [("a", 8, 3350), ("b", 24, 936)],
            4,
            {"a": 5},
            "b",
            id="the fastest, once its assignments leave too little, is not",
        ),
        pytest.param(
            [("a", 8, 936), ("b", 24, 936)], 4, {}, "b", id="equal bandwidth: most room left"
        ),
        pytest.param(
            [("a", 24, 936), ("b", 24, 936)],
            4,
            {"b": 1},
            "a",
            id="equal bandwidth: room counts what is already assigned",
        ),
        pytest.param(
            [("b", 8, 936), ("a", 8, 936)], 4, {}, "a", id="equal bandwidth and room: node"
        ),
        pytest.param(
            [("a", 8, -5.0), ("b", 24, 0)], 4, {}, "b", id="a negative figure counts as 0"
        ),
        pytest.param([("a", 8, float("nan")), ("b", 24, 0)], 4, {}, "b", id="NaN counts as 0"),
        pytest.param([("a", 2, 3350), ("b", 3, 936)], 4, {}, None, id="none fits: none"),
    ],
)
def test_choose_worker_prefers_bandwidth_then_room(
    workers: list[tuple[str, float, float]],
    need_gib: float,
    used_gib: dict[str, float],
    chosen: str | None,
) -> None:
    records = [Worker.of(measured(node, budget, gbps)) for node, budget, gbps in workers]
    used = {(node, "gpu0"): int(gib * GiB) for node, gib in used_gib.items()}
    worker, _ = choose_worker(int(need_gib * GiB), records, used)
    assert (worker.node if worker is not None else None) == chosen
    # the order of the workers given never matters
    again, _ = choose_worker(int(need_gib * GiB), list(reversed(records)), used)
    assert (again.node if again is not None else None) == chosen


def test_equal_bandwidth_room_and_node_fall_to_the_worker_id() -> None:
    records = [
        Worker.of(measured("a", 8, 936, worker_id="gpu1")),
        Worker.of(measured("a", 8, 936, worker_id="gpu0")),
    ]
    worker, _ = choose_worker(GiB, records, {})
    assert worker is not None and worker.worker_id == "gpu0"


def test_a_draining_fast_worker_is_passed_over_and_named() -> None:
    records = [Worker.of(measured("a", 80, 3350, draining=True)), Worker.of(measured("b", 24, 936))]
    worker, reasons = choose_worker(4 * GiB, records, {})
    assert worker is not None and worker.node == "b"
    assert "a/gpu0: draining" in reasons


def test_the_reasons_keep_their_format_with_bandwidth() -> None:
    records = [Worker.of(measured(*m)) for m in (("a", 8, 3350), ("b", 24, 936), ("c", 2, 4000))]
    worker, reasons = choose_worker(4 * GiB, records, {})
    assert worker is not None and worker.node == "a"
    assert reasons == [
        "a/gpu0: fits solo (4.00 GiB), 4.00 GiB left after",
        "c/gpu0: needs 4.00 GiB, has 2.00 GiB of 2.00 GiB free",
    ]


def test_models_fill_the_fastest_worker_first_then_the_next() -> None:
    catalog = {n: entry(n, 3) for n in ("x", "y", "z")}
    fast, slow = measured("fast", 7, 3350), measured("slow", 24, 936)
    result = plan(wants("x", "y", "z"), catalog, {}, [slow, fast], {}, SETTINGS)
    placed = {a.model: w.node for w, a in result.create}
    assert placed == {"x": "fast", "y": "fast", "z": "slow"}
    assert result.status["x"].reasons[0] == "fast/gpu0: fits solo (3.00 GiB), 4.00 GiB left after"


def gpu(node: str, worker_id: str, budget_gib: float, *, pins: bool = False) -> pb.WorkerRecord:
    record = worker(node, budget_gib)
    record.worker_id = record.device.id = worker_id
    record.pins_models = pins
    return record


def test_pins_to_devices_become_one_want_with_a_replica_per_device() -> None:
    demands = [
        pb.Demand(model="m", origin="a", pinned=True, worker_id="gpu1"),
        pb.Demand(model="m", origin="a", pinned=True, worker_id="gpu0"),
        pb.Demand(model="n", origin="a", pinned=True),
    ]
    assert wants_from(demands) == [
        Want("m", "a", 0, replicas=2, devices=("gpu0", "gpu1")),
        Want("n", "a", 0),
    ]


@pytest.mark.parametrize(
    ("devices", "budgets", "placed_on", "reason"),
    [
        # each replica on its own pinned device, though gpu2 has the most room
        (("gpu0", "gpu1"), (4, 4, 64), ["gpu0", "gpu1"], ""),
        (("gpu1",), (64, 4, 64), ["gpu1"], ""),
        # a pinned device too small: never elsewhere, and it says why
        (("gpu1",), (64, 0.5, 64), [], "needs 1.00 GiB"),
        # a pinned device that is not there (yet)
        (("gpu9",), (64, 64, 64), [], "pinned to gpu9 of a"),
    ],
)
def test_a_pin_to_a_device_runs_there_or_nowhere(
    devices: tuple[str, ...], budgets: tuple[float, ...], placed_on: list[str], reason: str
) -> None:
    workers = [gpu("a", f"gpu{i}", b, pins=True) for i, b in enumerate(budgets)]
    want = Want("m", "a", 0, replicas=len(devices), devices=devices)
    result = plan([want], {"m": entry("m", 1)}, {}, workers, {}, SETTINGS)
    assert sorted(a.worker_id for _, a in result.create) == placed_on
    assert result.status["m"].placed == bool(placed_on)
    if reason:
        assert any(reason in r for r in result.status["m"].reasons), result.status["m"].reasons


def test_a_replica_off_its_pinned_device_moves_to_it() -> None:
    kept = {
        "k": pb.Assignment(
            id="r",
            group_id="r",
            model="m",
            origin="a",
            node="a",
            worker_id="gpu0",
            memory_bytes=GiB,
        )
    }
    workers = [gpu("a", "gpu0", 8, pins=True), gpu("a", "gpu1", 8, pins=True)]
    want = Want("m", "a", 0, devices=("gpu1",))
    result = plan([want], {"m": entry("m", 1)}, {}, workers, kept, SETTINGS)
    assert result.delete == ["k"] and [a.worker_id for _, a in result.create] == ["gpu1"]


@pytest.mark.parametrize(
    ("wants_", "pins", "standby"),
    [
        # a pin without devices claims every worker of its node
        ([Want("own", "a", 0)], {}, ["b/gpu0"]),
        # a pin with devices claims only those: the node's other GPU takes the mesh's replicas
        ([Want("own", "a", 0, devices=("gpu0",))], {}, ["a/gpu1", "b/gpu0"]),
        # a worker that says it pins models, before its pins arrive
        ([], {"a/gpu1"}, ["a/gpu0", "b/gpu0"]),
    ],
)
def test_standby_workers(wants_: list[Want], pins: set[str], standby: list[str]) -> None:
    workers = [gpu("a", "gpu0", 8), gpu("a", "gpu1", 8), gpu("b", "gpu0", 8)]
    for w in workers:
        w.pins_models = f"{w.node}/{w.worker_id}" in pins
    live = {(w.node, w.worker_id): w for w in workers}
    assert sorted(f"{n}/{i}" for n, i in standby_workers(wants_, live)) == standby


def drafted(name: str, size_gib: float, draft: str) -> pb.CatalogEntry:
    e = entry(name, size_gib, kv_per_token=1024)
    e.draft = draft
    return e


def with_draft(draft: str = "d") -> dict[str, pb.CatalogEntry]:
    """A 2 GiB model drafted by a 0.5 GiB one (or by one the catalog lacks)."""
    catalog = {"m": drafted("m", 2, draft)}
    return {**catalog, "d": entry("d", 0.5, 256)} if draft == "d" else catalog


# budgets in GiB, the catalog, whether a split is asked, where the replica goes, its draft,
# and a reason it gives
DRAFT_CASES = {
    "room for both: it drafts": ({"a": 8}, with_draft(), False, "a", "d", "drafts with d"),
    "room for the model only": (
        {"a": 2.3}, with_draft(), False, "a", "", "without its draft d: no device has room"
    ),
    "the device with room for both": (
        {"a": 2.3, "b": 2.6}, with_draft(), False, "b", "d", "drafts with d"
    ),
    "a draft the catalog lacks": (
        {"a": 8}, with_draft("ghost"), False, "a", "", "without its draft ghost: not in the"
    ),
    "a split drafts nothing": (
        {"a": 8, "b": 8}, with_draft(), True, "a", "", "split over 2 devices"
    ),
    "no draft asked": ({"a": 8}, {"m": entry("m", 2)}, False, "a", "", "fits solo"),
}  # fmt: skip


@pytest.mark.parametrize(
    ("budgets", "catalog", "split", "placed_on", "draft", "why"),
    list(DRAFT_CASES.values()),
    ids=list(DRAFT_CASES),
)
def test_a_replica_drafts_where_its_device_has_room_for_both(
    budgets: dict[str, float],
    catalog: dict[str, pb.CatalogEntry],
    split: bool,
    placed_on: str,
    draft: str,
    why: str,
) -> None:
    workers = [worker(node, gib) for node, gib in budgets.items()]
    want = Want("m", "", 0, split=split)
    result = plan([want], catalog, {}, workers, {}, SETTINGS, rtts({"ab": 1.0}))
    lead = next(a for _, a in result.create if a.role != pb.ASSIGNMENT_ROLE_PEER)
    assert (lead.node, lead.draft) == (placed_on, draft)
    assert any(why in r for r in result.status["m"].reasons), result.status["m"].reasons
    if split:
        return
    need = memory_needed(catalog["m"].facts, lead.context, SETTINGS)
    d = catalog.get(draft)
    extra = d.facts.file_size_bytes + d.facts.kv_bytes_per_token * lead.context if d else 0
    assert lead.memory_bytes == need + extra  # what the device holds, draft included
