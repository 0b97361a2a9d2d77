from __future__ import annotations

import pytest

from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.worker.rtt import MAX_FAILURES, RttProbe, smooth, worth_publishing


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
