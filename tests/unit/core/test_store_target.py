from __future__ import annotations

import pytest

from meshllm.core.store import client_target


@pytest.mark.parametrize(
    ("endpoints", "target"),
    [
        (["127.0.0.1:2379"], ("127.0.0.1", 2379)),
        (["etcd:2379"], ("etcd", 2379)),
        (["10.0.0.1:1", "10.0.0.2:2", "10.0.0.3:3"], ("ipv4:10.0.0.1:1,10.0.0.2:2,10.0.0.3", 3)),
    ],
)
def test_client_target(endpoints: list[str], target: tuple[str, int]) -> None:
    assert client_target(endpoints) == target


def test_no_endpoint() -> None:
    with pytest.raises(ValueError):
        client_target([])
