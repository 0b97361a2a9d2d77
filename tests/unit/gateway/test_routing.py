from __future__ import annotations

import random
from collections import Counter

import pytest

from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.gateway.proxy import TokenCounter
from meshllm.gateway.routing import Router


def endpoints(*ids: str) -> list[pb.Endpoint]:
    return [pb.Endpoint(instance_id=i) for i in ids]


def test_least_outstanding_first() -> None:
    router = Router(suspect_for_s=10, rng=random.Random(1))
    a, b, c = endpoints("a", "b", "c")
    for _ in range(2):
        router.started(a)
    router.started(b)
    assert [e.instance_id for e in router.rank([a, b, c])] == ["c", "b", "a"]
    router.finished(a)
    router.finished(a)
    assert router.in_flight("a") == 0


def test_failed_replica_goes_last_until_its_suspicion_ends() -> None:
    router = Router(suspect_for_s=10, rng=random.Random(1))
    a, b = endpoints("a", "b")
    router.started(a)
    router.finished(a, failed=True)
    router.started(b)
    router.started(b)
    assert [e.instance_id for e in router.rank([a, b])] == ["b", "a"]
    later = router.rank([a, b], now=1e12)
    assert [e.instance_id for e in later] == ["a", "b"]


def test_ties_spread_evenly() -> None:
    router = Router(suspect_for_s=10, rng=random.Random(7))
    replicas = endpoints("a", "b", "c", "d")
    firsts = Counter(router.rank(replicas)[0].instance_id for _ in range(4000))
    assert set(firsts) == {"a", "b", "c", "d"}
    assert max(firsts.values()) - min(firsts.values()) < 250


def test_balanced_under_load() -> None:
    """Requests that stay in flight spread over replicas within one of each other."""
    router = Router(suspect_for_s=10, rng=random.Random(3))
    replicas = endpoints("a", "b", "c")
    for _ in range(100):
        router.started(router.rank(replicas)[0])
    counts = [router.in_flight(e.instance_id) for e in replicas]
    assert max(counts) - min(counts) <= 1


@pytest.mark.parametrize(
    ("stream", "chunks", "usage"),
    [
        (
            True,
            [
                b'data: {"delta":{"role":"assistant","content":null}}\n\n',
                b'data: {"delta":{"content":"Hel"}}\n\ndata: {"delta":{"content":"lo"}}\n\n',
                b'data: {"delta":{"content":""}}\n\ndata: {"delta":{}}\n\ndata: [DONE]\n\n',
            ],
            (0, 2),
        ),
        (
            True,
            [b'data: {"choices":[{"text":" a"}]}\n\n', b'data: {"choices":[{"text":"b"}]}'],
            (0, 2),
        ),
        (False, [b'{"usage": {"prompt_tokens": 5, ', b'"completion_tokens": 7}}'], (5, 7)),
        (False, [b"not json"], (0, 0)),
    ],
)
def test_token_counter(stream: bool, chunks: list[bytes], usage: tuple[int, int]) -> None:
    counter = TokenCounter(stream)
    for chunk in chunks:
        counter(chunk)
    assert counter.usage() == usage
