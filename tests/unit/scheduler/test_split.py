from __future__ import annotations

import pytest

from meshllm.scheduler.split import Device, plan_split

GiB = 2**30


def device(node: str, free_gib: float, rpc: str = "7.0") -> Device:
    return Device(node, "gpu0", int(free_gib * GiB), rpc)


def rtts(table: dict[str, float]):  # type: ignore[no-untyped-def]
    """Round-trip times from the host, by the peer's node; missing: not measured."""
    return lambda host, peer: table.get(peer.node)


def test_a_model_that_fits_one_device_is_never_split() -> None:
    plan, reasons = plan_split(4 * GiB, [device("a", 8), device("b", 2)], rtts({"b": 1}))
    assert plan is None and "never split" in reasons[0]


def test_the_host_is_the_device_with_most_memory_and_keeps_the_output() -> None:
    plan, _ = plan_split(10 * GiB, [device("a", 4), device("b", 8)], rtts({"a": 5}))
    assert plan is not None
    assert plan.host.node == "b" and [p.node for p in plan.peers] == ["a"]
    assert plan.stages == 2


@pytest.mark.parametrize(
    ("rtt", "joins"), [(20.0, True), (79.9, True), (80.0, False), (100.0, False)]
)
def test_the_rtt_cap(rtt: float, joins: bool) -> None:
    plan, reasons = plan_split(10 * GiB, [device("a", 8), device("b", 4)], rtts({"b": rtt}))
    assert (plan is not None) is joins
    if not joins:
        assert any("over the 80 ms cap" in r for r in reasons)


def test_layers_in_proportion_to_free_memory() -> None:
    plan, _ = plan_split(
        12 * GiB, [device("a", 8), device("b", 4), device("c", 4)], rtts({"b": 1, "c": 2})
    )
    assert plan is not None and [p.node for p in plan.peers] == ["b"]
    assert plan.shares == pytest.approx((4 / 12, 8 / 12))
    assert sum(plan.shares) == pytest.approx(1.0)


def test_fewest_stages_first_then_the_nearest() -> None:
    devices = [device("a", 8), device("near", 2), device("mid", 3), device("far", 6)]
    plan, _ = plan_split(13 * GiB, devices, rtts({"near": 1, "mid": 5, "far": 30}))
    # one peer suffices only with "far": a second stage is never added to avoid its RTT
    assert plan is not None and [p.node for p in plan.peers] == ["far"]
    assert plan.per_token_ms == pytest.approx(30)
    plan, _ = plan_split(10 * GiB, devices, rtts({"near": 1, "mid": 5, "far": 30}))
    # several single peers fit: the nearest that does
    assert plan is not None and [p.node for p in plan.peers] == ["near"]


def test_the_latency_model_adds_compute() -> None:
    plan, _ = plan_split(10 * GiB, [device("a", 8), device("b", 4)], rtts({"b": 12}), compute_ms=8)
    assert plan is not None and plan.per_token_ms == pytest.approx(20)


def test_three_stages_when_two_do_not_fit() -> None:
    devices = [device("a", 4), device("b", 4), device("c", 4)]
    plan, _ = plan_split(11 * GiB, devices, rtts({"b": 2, "c": 3}))
    assert plan is not None and plan.stages == 3 and plan.host.node == "a"


def test_peers_on_the_hosts_own_node_need_no_rtt() -> None:
    same = Device("a", "gpu1", 4 * GiB, "7.0")
    plan, _ = plan_split(10 * GiB, [device("a", 8), same], rtts({}))
    assert plan is not None and plan.peers == (same,)


@pytest.mark.parametrize(
    ("peer", "reason"),
    [
        (device("b", 4, rpc="6.0"), "RPC protocol 6.0, the host speaks 7.0"),
        (device("c", 4), "no round-trip time measured"),
    ],
)
def test_peers_that_cannot_join(peer: Device, reason: str) -> None:
    plan, reasons = plan_split(10 * GiB, [device("a", 8), peer], rtts({"b": 1}))
    assert plan is None
    assert "needs 10.00 GiB" in reasons[0] and any(reason in r for r in reasons)


def test_no_devices() -> None:
    assert plan_split(GiB, [], rtts({})) == (None, ["no device in the mesh"])


def test_only_a_device_that_can_host_is_the_host() -> None:
    devices = [device("a", 4), Device("b", "gpu0", 8 * GiB, "7.0", can_host=False)]
    plan, _ = plan_split(10 * GiB, devices, rtts({"b": 1}))
    assert plan is not None and plan.host.node == "a"
    plan, reasons = plan_split(
        10 * GiB, [Device("b", "gpu0", 8 * GiB, "7.0", can_host=False)], rtts({})
    )
    assert plan is None and reasons == ["no device in the mesh can host it"]


def test_a_forced_split_of_what_fits_takes_the_nearest_peer() -> None:
    devices = [device("a", 8), device("b", 4), device("c", 4)]
    plan, _ = plan_split(2 * GiB, devices, rtts({"b": 3, "c": 1}), force=True)
    assert plan is not None and [p.node for p in plan.peers] == ["c"]


@pytest.mark.parametrize(("version", "joins"), [("7.1.0", True), ("8.0.0", False), ("", False)])
def test_peers_share_the_hosts_rpc_major_version(version: str, joins: bool) -> None:
    devices = [Device("a", "gpu0", 8 * GiB, "7.0.0"), Device("b", "gpu0", 4 * GiB, version)]
    plan, _ = plan_split(10 * GiB, devices, rtts({"b": 1}))
    assert (plan is not None) is joins
