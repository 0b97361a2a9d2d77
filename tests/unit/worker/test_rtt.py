from __future__ import annotations

import pytest

from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.worker.rtt import MAX_FAILURES, RttProbe, due_nodes, smooth, worth_publishing


@pytest.mark.parametrize(
    ("old", "new", "publish"),
    [
        ({}, {"b": 1.0}, True),  # a node came
        ({"b": 1.0}, {}, True),  # a node went
        ({"b": 10.0}, {"b": 11.5}, False),  # under 20 %
        ({"b": 10.0}, {"b": 12.5}, True),
        ({"b": 0.2}, {"b": 0.9}, False),  # under 1 ms
        ({"b": 100.0}, {"b": 76.0}, True),
    ],
)
def test_only_a_change_that_matters_is_published(
    old: dict[str, float], new: dict[str, float], publish: bool
) -> None:
    assert worth_publishing(old, new) is publish


def test_samples_are_smoothed() -> None:
    assert smooth(None, 10.0) == 10.0
    assert smooth(100.0, 20.0) == pytest.approx(76.0)


async def test_a_node_that_stops_answering_drops_out_after_repeated_failures() -> None:
    answers: dict[str, float | None] = {"b:1": 5.0, "c:1": 7.0}

    async def measure(address: str) -> float | None:
        return answers[address]

    workers = [
        pb.WorkerRecord(node="a", tunnel_address="a:1"),  # this node: never probed
        pb.WorkerRecord(node="b", tunnel_address="b:1"),
        pb.WorkerRecord(node="c", tunnel_address="c:1"),
    ]
    probe = RttProbe("a", measure)
    assert await probe.sample(workers) == {"b": 5.0, "c": 7.0}
    answers["c:1"] = None
    for _ in range(MAX_FAILURES - 1):
        assert "c" in await probe.sample(workers)
    assert await probe.sample(workers) == {"b": 5.0}
    assert await probe.sample(workers[:2]) == {"b": 5.0}
    assert await probe.sample(workers[:1]) == {}


@pytest.mark.parametrize(
    ("probed_at", "confirming", "per_round", "due"),
    [
        ({}, set(), 5, ["b", "c", "d", "e"]),  # all of them while they fit
        ({"b": 1.0, "c": 2.0, "d": 3.0, "e": 4.0}, set(), 4, ["b", "c", "d", "e"]),
        ({"b": 1.0, "c": 2.0, "d": 3.0}, set(), 2, ["e", "b"]),  # never probed, then oldest
        ({"b": 1.0, "c": 2.0, "d": 3.0, "e": 4.0}, {"d"}, 2, ["d", "b"]),  # a failure confirmed
        ({"b": 1.0, "c": 2.0, "d": 3.0, "e": 4.0}, set(), 1, ["b"]),
    ],
)
def test_a_round_probes_the_most_urgent_nodes(
    probed_at: dict[str, float], confirming: set[str], per_round: int, due: list[str]
) -> None:
    assert due_nodes(["b", "c", "d", "e"], probed_at, confirming, per_round) == due


async def test_a_big_mesh_is_probed_in_turns_with_failures_confirmed_first() -> None:
    probed: list[list[str]] = []
    answers: dict[str, float | None] = {f"n{i}:1": float(i) for i in range(100)}
    clock = iter(range(1, 1000))

    async def measure(address: str) -> float | None:
        probed[-1].append(address.split(":")[0])
        return answers[address]

    workers = [pb.WorkerRecord(node=f"n{i}", tunnel_address=f"n{i}:1") for i in range(100)]
    probe = RttProbe("n0", measure, per_round=10, clock=lambda: float(next(clock)))

    async def round_() -> set[str]:
        probed.append([])
        report = await probe.sample(workers)
        assert len(probed[-1]) <= 10
        return set(report)

    rounds = [await round_() for _ in range(10)]  # 99 other nodes, 10 a round
    first = [n for batch in probed for n in batch]
    assert len(first) == 100 and set(first) == {f"n{i}" for i in range(1, 100)}
    assert first[-1] == "n1"  # every node once, then the one measured longest ago
    assert len(rounds[-1]) == 99
    answers["n50:1"] = None  # n50 stops answering: its failure is confirmed in the next rounds
    while "n50" not in probed[-1]:  # its first failure, in its turn
        await round_()
    for _ in range(MAX_FAILURES - 2):
        assert "n50" in await round_()  # not yet dropped ...
        assert "n50" in probed[-1]  # ... and probed again at once
    assert "n50" not in await round_()  # dropped: now it waits its turn like the rest
    await round_()
    assert "n50" not in probed[-1] and len(probed[-1]) == 10
    assert await probe.sample(workers[:2]) == {"n1": 1.0}  # nodes that left are forgotten
