"""Device inventory parsing against recorded NVML inventories (no GPU can run here), and the
CPU fallback against this machine's real /proc/meminfo."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pynvml
import pytest

from meshllm.cli.config_file import stable_ids
from meshllm.core.devices import stable_id
from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.worker import gpus

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "gpus"


class RecordedNvml:
    """Answers NVML calls from a JSON inventory in NVML's shape (a 2-GPU H100 host). A field
    the recording lacks is answered as the driver answers what it does not support: with
    pynvml's NVMLError (NOT_SUPPORTED)."""

    NVMLError = pynvml.NVMLError

    def __init__(self, inventory: list[dict[str, Any]], driver_version: str = "") -> None:
        self.inventory = inventory
        self.driver_version = driver_version
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
        if isinstance(handle.get("memory_error"), int):
            raise pynvml.NVMLError(handle["memory_error"])
        return SimpleNamespace(total=handle["memory_total"], free=handle["memory_free"])

    def nvmlDeviceGetUUID(self, handle: dict[str, Any]) -> str:
        return handle["uuid"]

    def nvmlDeviceGetName(self, handle: dict[str, Any]) -> bytes:
        return handle["name"].encode()

    def nvmlDeviceGetPciInfo(self, handle: dict[str, Any]) -> SimpleNamespace:
        return SimpleNamespace(busId=handle["pci_bus_id"])

    def nvmlSystemGetDriverVersion(self) -> str:
        if not self.driver_version:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return self.driver_version

    def nvmlDeviceGetAddressingMode(self, handle: dict[str, Any]) -> int:
        return int(self._recorded(handle, "addressing_mode"))

    def nvmlDeviceGetC2cModeInfoV(self, handle: dict[str, Any]) -> SimpleNamespace:
        return SimpleNamespace(isC2cEnabled=self._recorded(handle, "c2c_enabled"))

    def _recorded(self, handle: dict[str, Any], field: str) -> Any:
        if field not in handle:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return handle[field]


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


def test_a_node_runs_a_worker_per_device_it_is_given(h100x2: RecordedNvml) -> None:
    found = gpus.nvidia_devices(h100x2)
    a, b = (g.uuid for g in found)
    table = [
        ("auto", found, [a, b]),  # every GPU
        ("auto", [], ["cpu"]),  # no GPU: the CPU
        ("cpu", found, ["cpu"]),
        ("1", found, [b]),
        (f"1,{a}", found, [b, a]),  # indexes and UUIDs, in the order given
        (f"0,{a}", found, [a]),  # one device named twice runs one worker
    ]
    for choice, inventory, expected in table:
        assert gpus.worker_devices(choice, inventory) == expected, choice
    with pytest.raises(ValueError, match="device '7' not found"):
        gpus.worker_devices("0,7", found)
    with pytest.raises(ValueError, match="no device named"):
        gpus.worker_devices(",", found)


# One H200 host, recorded with nvidia-ml-py 13 (driver 580.159.04): NVML's answers, and the
# head of its /proc/meminfo.
H200 = {
    "name": "NVIDIA H200",
    "uuid": "GPU-5e8153a0-041a-19a0-67b4-ba8d9247bcf0",
    "pci_bus_id": "00000000:00:06.0",
    "memory_total": 150754820096,
    "memory_free": 150109880320,
    "addressing_mode": 0,
    "c2c_enabled": 0,
}
H200_DRIVER = "580.159.04"
H200_MEMINFO = (
    "MemTotal:       131961976 kB\nMemFree:        130629120 kB\nMemAvailable:   131420652 kB\n"
)


def meminfo(tmp_path: Path, text: str = H200_MEMINFO) -> str:
    path = tmp_path / "meminfo"
    path.write_text(text)
    return str(path)


def test_recorded_h200_is_a_discrete_gpu_with_its_driver(tmp_path: Path) -> None:
    [h200] = gpus.nvidia_inventory(RecordedNvml([H200], H200_DRIVER), meminfo(tmp_path))
    assert not h200.unified_memory and h200.driver_version == "580.159.04"
    assert h200.device.memory_total_bytes == 150754820096
    assert h200.device.memory_free_bytes == h200.device.memory_budget_bytes == 150109880320
    assert stable_id(h200.device) == ("uuid:GPU-5e8153a0-041a-19a0-67b4-ba8d9247bcf0", True)


SYSTEM_TOTAL = 131961976 * 1024  # the recording's MemTotal
SYSTEM_AVAILABLE = 131420652 * 1024


@pytest.mark.parametrize(
    ("changes", "unified"),
    [
        pytest.param({}, False, id="as recorded: discrete"),
        pytest.param(
            {"memory_error": pynvml.NVML_ERROR_NOT_SUPPORTED}, True, id="no memory figures"
        ),
        pytest.param({"memory_total": 0, "memory_free": 0}, True, id="a memory total of 0"),
        pytest.param({"memory_total": SYSTEM_TOTAL}, True, id="the system's memory total"),
        pytest.param({"memory_total": int(SYSTEM_TOTAL * 0.995)}, True, id="within 1 %"),
        pytest.param({"memory_total": int(SYSTEM_TOTAL * 1.02)}, False, id="2 % off: its own"),
        pytest.param({"addressing_mode": pynvml.NVML_DEVICE_ADDRESSING_MODE_ATS}, True, id="ATS"),
        pytest.param({"addressing_mode": pynvml.NVML_DEVICE_ADDRESSING_MODE_HMM}, False, id="HMM"),
        pytest.param({"c2c_enabled": 1}, True, id="NVLink-C2C"),
        pytest.param({"addressing_mode": None, "c2c_enabled": None}, False, id="queries missing"),
    ],
)
def test_unified_memory_rule(tmp_path: Path, changes: dict[str, Any], unified: bool) -> None:
    handle = {**H200, **changes}
    for field in [k for k, v in changes.items() if v is None]:
        del handle[field]  # an older driver: NOT_SUPPORTED
    [gpu] = gpus.nvidia_inventory(RecordedNvml([handle], H200_DRIVER), meminfo(tmp_path))
    assert gpu.unified_memory is unified


def test_a_gpu_without_memory_figures_has_the_systems(tmp_path: Path) -> None:
    """DGX Spark's GB10 answers NOT_SUPPORTED: its memory is the system's."""
    gb10 = {**H200, "name": "NVIDIA GB10", "memory_error": pynvml.NVML_ERROR_NOT_SUPPORTED}
    [gpu] = gpus.nvidia_inventory(RecordedNvml([gb10], H200_DRIVER), meminfo(tmp_path))
    assert gpu.device.memory_total_bytes == SYSTEM_TOTAL
    assert gpu.device.memory_free_bytes == gpu.device.memory_budget_bytes == SYSTEM_AVAILABLE


def test_another_memory_error_is_not_taken_for_unified(tmp_path: Path) -> None:
    lost = {**H200, "memory_error": pynvml.NVML_ERROR_GPU_IS_LOST}
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        gpus.nvidia_inventory(RecordedNvml([lost]), meminfo(tmp_path))


def test_the_h100_recording_has_no_driver_version_and_is_discrete(
    h100x2: RecordedNvml, tmp_path: Path
) -> None:
    inventory = gpus.nvidia_inventory(h100x2, meminfo(tmp_path))
    assert [(g.unified_memory, g.driver_version) for g in inventory] == [(False, "")] * 2


@pytest.mark.parametrize(
    ("device", "expected"),
    [
        pytest.param(
            pb.Device(uuid="GPU-a3b4", pci_bus_id="00000000:2A:00.0"),
            ("uuid:GPU-a3b4", True),
            id="uuid",
        ),
        pytest.param(
            pb.Device(pci_bus_id="00000000:2A:00.0"), ("pci:0000:2a:00.0", True), id="pci"
        ),
        pytest.param(
            pb.Device(pci_bus_id="0000000B:01:00.0"), ("pci:000b:01:00.0", True), id="pci domain"
        ),
        pytest.param(pb.Device(kind=pb.DEVICE_KIND_CUDA, index=3), ("index:3", False), id="index"),
        pytest.param(
            pb.Device(kind=pb.DEVICE_KIND_CPU, id="cpu0", index=-1), ("cpu:0", False), id="cpu"
        ),
    ],
)
def test_stable_id(device: pb.Device, expected: tuple[str, bool]) -> None:
    assert stable_id(device) == expected


def test_every_pinnable_id_is_one_a_pinned_config_accepts(h100x2: RecordedNvml) -> None:
    for device in gpus.nvidia_devices(h100x2):
        no_uuid = pb.Device(pci_bus_id=device.pci_bus_id)
        for d in (device, no_uuid):
            ident, pinnable = stable_id(d)
            assert pinnable and ident in stable_ids(d)


def test_without_a_driver_the_machine_is_one_unified_cpu() -> None:
    [cpu] = gpus.local_devices(0.5, NoDriver())
    assert cpu.unified_memory and gpus.backend(cpu.device) == "cpu"
    assert stable_id(cpu.device) == ("cpu:0", False)


def test_a_gpu_worker_names_its_device_by_uuid_to_cuda() -> None:
    from meshllm.worker.__main__ import device_env

    gpu = pb.Device(kind=pb.DEVICE_KIND_CUDA, uuid="GPU-1234", index=3)
    env = device_env(gpu, "/tmp/llama-cache")
    assert env["CUDA_VISIBLE_DEVICES"] == "GPU-1234" and env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    cpu = device_env(pb.Device(kind=pb.DEVICE_KIND_CPU), "/tmp/llama-cache")
    assert cpu.get("CUDA_VISIBLE_DEVICES") == os.environ.get("CUDA_VISIBLE_DEVICES")
