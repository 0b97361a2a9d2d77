"""Device inventory: NVIDIA GPUs through NVML (nvidia-ml-py); one CPU device where no NVIDIA
driver is present, with a configurable share of system memory as its budget."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from meshllm.core.proto.mesh.v1 import common_pb2 as pb

logger = logging.getLogger(__name__)


def nvidia_devices(nvml: Any = None) -> list[pb.Device]:
    """Every NVIDIA GPU NVML sees; [] when there is no driver. `nvml` is the pynvml module
    (a parameter so the parsing can be tested against recorded inventories)."""
    if nvml is None:
        try:
            import pynvml as nvml
        except ImportError:
            return []
    try:
        nvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        logger.debug("no NVIDIA driver: %s", exc)
        return []
    try:
        return [_nvml_device(nvml, i) for i in range(nvml.nvmlDeviceGetCount())]
    finally:
        nvml.nvmlShutdown()


def _nvml_device(nvml: Any, index: int) -> pb.Device:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    memory = nvml.nvmlDeviceGetMemoryInfo(handle)
    uuid = _text(nvml.nvmlDeviceGetUUID(handle))
    return pb.Device(
        id=uuid,
        kind=pb.DEVICE_KIND_CUDA,
        name=_text(nvml.nvmlDeviceGetName(handle)),
        uuid=uuid,
        pci_bus_id=_text(nvml.nvmlDeviceGetPciInfo(handle).busId),
        index=index,
        memory_total_bytes=int(memory.total),
        memory_free_bytes=int(memory.free),
        memory_budget_bytes=int(memory.free),
    )


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def cpu_device(fraction: float, explicit_bytes: int = 0) -> pb.Device:
    total, available = system_memory()
    budget = explicit_bytes or int(available * fraction)
    return pb.Device(
        id="cpu0",
        kind=pb.DEVICE_KIND_CPU,
        name=f"CPU ({os.cpu_count()} cores)",
        index=-1,
        memory_total_bytes=total,
        memory_free_bytes=available,
        memory_budget_bytes=budget,
    )


def system_memory(meminfo: str = "/proc/meminfo") -> tuple[int, int]:
    """(total, available) bytes of RAM."""
    values: dict[str, int] = {}
    with open(meminfo) as f:
        for line in f:
            name, _, rest = line.partition(":")
            values[name] = int(rest.split()[0]) * 1024
    return values["MemTotal"], values.get("MemAvailable", values.get("MemFree", 0))


def select_device(
    choice: str,
    fraction: float,
    explicit_bytes: int = 0,
    probe: Callable[[], list[pb.Device]] = nvidia_devices,
) -> pb.Device:
    """The device this worker owns: 'cpu', 'auto' (first GPU, else the CPU), or a GPU index
    or UUID."""
    if choice == "cpu":
        return cpu_device(fraction, explicit_bytes)
    gpus = probe()
    if choice == "auto":
        return gpus[0] if gpus else cpu_device(fraction, explicit_bytes)
    for gpu in gpus:
        if choice in (str(gpu.index), gpu.uuid):
            return gpu
    seen = ", ".join(f"{g.index}={g.uuid}" for g in gpus) or "none"
    raise ValueError(f"device '{choice}' not found (GPUs seen: {seen}); use 'auto' or 'cpu'")


def cap_budget(device: pb.Device, max_bytes: int) -> pb.Device:
    """`serve --max-vram`: what the device offers the mesh, never more than `max_bytes`."""
    if max_bytes > 0 and device.memory_budget_bytes > max_bytes:
        device.memory_budget_bytes = max_bytes
    return device
