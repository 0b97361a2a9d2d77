"""Which ports a node hands its own processes: never the kernel's ephemeral ones, never one
twice, never one that is held."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from meshllm.core import ports
from meshllm.core.ports import (
    LINUX_EPHEMERAL,
    SERVICE_PORTS,
    bindable,
    ephemeral_range,
    free_port,
    outside,
    reserve,
    worker_port_range,
)


@pytest.mark.parametrize(
    ("pool", "ephemeral", "expected"),
    [
        (range(20000, 30000), range(32768, 61000), range(20000, 30000)),  # Linux's default
        (range(20000, 30000), range(25000, 61000), range(20000, 25000)),  # a wider range
        (range(20000, 30000), range(1024, 65536), range(0)),  # nothing left: the kernel picks
        (range(20000, 30000), range(22000, 23000), [*range(20000, 22000), *range(23000, 30000)]),
    ],
)
def test_the_pool_leaves_out_the_ephemeral_range(
    pool: range, ephemeral: range, expected: range
) -> None:
    assert outside(pool, ephemeral) == list(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("32768\t60999\n", range(32768, 61000)), ("1024 65535", range(1024, 65536)), ("", None)],
)
def test_the_ephemeral_range_is_read_from_the_kernel(
    tmp_path: Path, text: str, expected: range | None
) -> None:
    path = tmp_path / "ip_local_port_range"
    path.write_text(text)
    assert ephemeral_range(path) == (expected or LINUX_EPHEMERAL)
    assert ephemeral_range(tmp_path / "absent") == LINUX_EPHEMERAL


@pytest.mark.parametrize(
    ("index", "expected"), [(0, "30000-30099"), (1, "30100-30199"), (7, "30700-30799")]
)
def test_each_worker_of_a_node_has_its_own_llama_ports(index: int, expected: str) -> None:
    assert worker_port_range(index) == expected


def test_a_port_is_handed_out_once_outside_the_ephemeral_range() -> None:
    ephemeral = ephemeral_range()
    picked = [free_port() for _ in range(200)]
    assert len(set(picked)) == len(picked)
    assert all(p in SERVICE_PORTS and p not in ephemeral for p in picked)


def test_a_held_port_and_a_reserved_one_are_never_handed_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        assert not bindable("127.0.0.1", taken)
        pool = [taken, taken, 25001, 25002]  # the first draws find it held
        monkeypatch.setattr(ports, "outside", lambda pool_, ephemeral: pool)
        monkeypatch.setattr(ports.random, "sample", lambda population, k: list(population))
        monkeypatch.setattr(ports, "_handed_out", set())
        reserve(25001)
        assert free_port() == 25002


def test_the_kernel_picks_when_the_pool_is_used_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ports, "outside", lambda pool, ephemeral: [])
    assert bindable("127.0.0.1", free_port())


def test_a_reserved_port_is_never_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ports, "_handed_out", set())
    monkeypatch.setattr(ports, "outside", lambda pool, ephemeral: [25101, 25102])
    monkeypatch.setattr(ports.random, "sample", lambda population, k: list(population))
    reserve(25101, 0)  # serve's own --port; 0: a port not asked for
    assert free_port() == 25102
    assert 0 not in ports._handed_out
