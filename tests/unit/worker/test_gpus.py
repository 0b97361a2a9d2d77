"""Device inventory parsing against a recorded NVML inventory (no GPU can run here), and the
CPU fallback against this machine's real /proc/meminfo."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.worker import gpus

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "gpus"


class RecordedNvml:
    """Answers NVML calls from a JSON inventory in NVML's shape (a 2-GPU H100 host)."""

    def __init__(self, inventory: list[dict[str, Any]]) -> None:
        self.inventory = inventory
        self.initialised = False

    def nvmlInit(self) -> None:
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self.initialised = False

    def nvmlDeviceGetCount(self) -> int:
        return len(self.inventory)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> dict[str, Any]:
        return self.inventory[index]

    def nvmlDeviceGetMemoryInfo(self, handle: dict[str, Any]) -> SimpleNamespace:
        return SimpleNamespace(total=handle["memory_total"], free=handle["memory_free"])

    def nvmlDeviceGetUUID(self, handle: dict[str, Any]) -> str:
        return handle["uuid"]

    def nvmlDeviceGetName(self, handle: dict[str, Any]) -> bytes:
        return handle["name"].encode()

    def nvmlDeviceGetPciInfo(self, handle: dict[str, Any]) -> SimpleNamespace:
        return SimpleNamespace(busId=handle["pci_bus_id"])


class NoDriver:
    def nvmlInit(self) -> None:
        raise OSError("NVML Shared Library Not Found")


@pytest.fixture
def h100x2() -> RecordedNvml:
    return RecordedNvml(json.loads((FIXTURES / "h100x2.json").read_text()))


def test_nvidia_inventory(h100x2: RecordedNvml) -> None:
    devices = gpus.nvidia_devices(h100x2)
    assert [d.index for d in devices] == [0, 1]
    first = devices[0]
    assert first.kind == pb.DEVICE_KIND_CUDA and first.name.startswith("NVIDIA H100")
    assert first.id == first.uuid and first.uuid.startswith("GPU-")
    assert first.memory_total_bytes > first.memory_free_bytes == first.memory_budget_bytes
    assert not h100x2.initialised


def test_no_driver_means_no_gpus() -> None:
    assert gpus.nvidia_devices(NoDriver()) == []


def test_cpu_fallback_uses_a_share_of_real_memory() -> None:
    total, available = gpus.system_memory()
    device = gpus.select_device("auto", 0.5, probe=lambda: [])
    assert device.kind == pb.DEVICE_KIND_CPU and device.id == "cpu0"
    assert device.memory_total_bytes == total
    assert abs(device.memory_budget_bytes - available * 0.5) < 0.05 * total
    assert gpus.select_device("cpu", 0.5, explicit_bytes=123).memory_budget_bytes == 123


def test_select_gpu_by_index_or_uuid(h100x2: RecordedNvml) -> None:
    probe = lambda: gpus.nvidia_devices(h100x2)  # noqa: E731
    second = gpus.select_device("1", 0.5, probe=probe)
    assert second.index == 1
    assert gpus.select_device(second.uuid, 0.5, probe=probe).index == 1
    assert gpus.select_device("auto", 0.5, probe=probe).index == 0
    with pytest.raises(ValueError, match="device '7' not found"):
        gpus.select_device("7", 0.5, probe=probe)
