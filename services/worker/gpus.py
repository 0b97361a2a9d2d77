"""Device inventory: NVIDIA GPUs through NVML (nvidia-ml-py); one CPU device where no NVIDIA
driver is present, with a configurable share of system memory as its budget.

Beyond the `Device` a worker publishes, the inventory says what only this machine knows
(`LocalDevice`): the driver version, and whether the device's memory is **unified** — one
memory that the CPU and the device both address, with no copies between them. The rule:

- the CPU device: always;
- an NVIDIA GPU for which NVML has no memory figures (`nvmlDeviceGetMemoryInfo` answers
  NOT_SUPPORTED, or a total of 0): an integrated GPU using system RAM (DGX Spark's GB10,
  Jetson); its memory total and free are then the system's (/proc/meminfo);
- an NVIDIA GPU whose NVML memory total is the system's MemTotal (within 1 %, closer than
  a discrete card's memory and a host's RAM of the same nominal size come): the same memory;
- an NVIDIA GPU that addresses system memory coherently: NVML's addressing mode is ATS, or
  NVLink-C2C is enabled (Grace Hopper, Grace Blackwell). Its memory total stays its own HBM.

A query the driver or the binding lacks counts as "no". Each device also has a **stable id**
(`stable_id`): `uuid:GPU-…`, else `pci:0000:…`; the fallbacks `index:N` and `cpu:0` are
shown but not pinnable, since they can change between boots."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from meshllm.core.proto.mesh.v1 import common_pb2 as pb

logger = logging.getLogger(__name__)


BACKENDS = {
    pb.DEVICE_KIND_CPU: "cpu",
    pb.DEVICE_KIND_CUDA: "cuda",
    pb.DEVICE_KIND_ROCM: "rocm",
    pb.DEVICE_KIND_VULKAN: "vulkan",
}
UNIFIED_TOLERANCE = 0.01  # an NVML memory total this close to the system's is the system's
NVML_ERROR_NOT_SUPPORTED = 3
NVML_DEVICE_ADDRESSING_MODE_ATS = 2


@dataclass(frozen=True)
class LocalDevice:
    """A device of this machine, with what only this machine knows about it."""

    device: pb.Device
    unified_memory: bool
    driver_version: str = ""


def nvidia_devices(nvml: Any = None) -> list[pb.Device]:
    """Every NVIDIA GPU NVML sees; [] when there is no driver. `nvml` is the pynvml module
    (a parameter so the parsing can be tested against recorded inventories)."""
    return [gpu.device for gpu in nvidia_inventory(nvml)]


def nvidia_inventory(nvml: Any = None, meminfo: str = "/proc/meminfo") -> list[LocalDevice]:
    """`nvidia_devices`, with each GPU's unified-memory flag and the driver version."""
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
        driver = _text(_ask(nvml, "nvmlSystemGetDriverVersion") or "")
        system = system_memory(meminfo)
        return [_nvml_device(nvml, i, driver, system) for i in range(nvml.nvmlDeviceGetCount())]
    finally:
        nvml.nvmlShutdown()


def _nvml_device(nvml: Any, index: int, driver: str, system: tuple[int, int]) -> LocalDevice:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    uuid = _text(nvml.nvmlDeviceGetUUID(handle))
    system_total, system_free = system
    try:
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        total, free = int(memory.total), int(memory.free)
        integrated = total == 0
    except _nvml_error(nvml) as exc:
        if getattr(exc, "value", None) != NVML_ERROR_NOT_SUPPORTED:
            raise
        total, free, integrated = 0, 0, True
    if integrated:  # no memory of its own: it uses the system's
        total, free = system_total, system_free
    device = pb.Device(
        id=uuid,
        kind=pb.DEVICE_KIND_CUDA,
        name=_text(nvml.nvmlDeviceGetName(handle)),
        uuid=uuid,
        pci_bus_id=_text(nvml.nvmlDeviceGetPciInfo(handle).busId),
        index=index,
        memory_total_bytes=total,
        memory_free_bytes=free,
        memory_budget_bytes=free,
    )
    c2c = _ask(nvml, "nvmlDeviceGetC2cModeInfoV", handle)
    unified = (
        integrated
        or abs(total - system_total) <= UNIFIED_TOLERANCE * system_total
        or _ask(nvml, "nvmlDeviceGetAddressingMode", handle) == NVML_DEVICE_ADDRESSING_MODE_ATS
        or bool(getattr(c2c, "isC2cEnabled", 0))
    )
    return LocalDevice(device, unified, driver)


def _nvml_error(nvml: Any) -> type[Exception]:
    error = getattr(nvml, "NVMLError", None)
    return error if isinstance(error, type) and issubclass(error, Exception) else OSError


def _ask(nvml: Any, query: str, *args: Any) -> Any:
    """An optional NVML query: None where the binding lacks it, or the driver or the device
    does not support it."""
    call = getattr(nvml, query, None)
    if call is None:
        return None
    try:
        return call(*args)
    except _nvml_error(nvml) as exc:
        logger.debug("NVML %s: %s", query, exc)
        return None


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


def worker_devices(choice: str, gpus: list[pb.Device]) -> list[str]:
    """The devices a node runs a worker on, one each, as `select_device` takes them (UUID,
    else index): 'auto' — every GPU, else the CPU; 'cpu'; or a comma-separated list of GPU
    indexes and UUIDs. ValueError names a device that is not here."""
    if choice == "cpu":
        return ["cpu"]
    if choice == "auto":
        return [g.uuid or str(g.index) for g in gpus] or ["cpu"]
    chosen: list[str] = []
    for part in (p.strip() for p in choice.split(",") if p.strip()):
        match = next((g for g in gpus if part in (str(g.index), g.uuid)), None)
        if match is None:
            seen = ", ".join(f"{g.index}={g.uuid}" for g in gpus) or "none"
            raise ValueError(f"device '{part}' not found (GPUs seen: {seen}); use 'auto' or 'cpu'")
        name = match.uuid or str(match.index)
        if name not in chosen:
            chosen.append(name)
    if not chosen:
        raise ValueError("no device named: use 'auto', 'cpu', or GPU indexes / UUIDs")
    return chosen


def cap_budget(device: pb.Device, max_bytes: int) -> pb.Device:
    """`serve --max-vram`: what the device offers the mesh, never more than `max_bytes`."""
    if max_bytes > 0 and device.memory_budget_bytes > max_bytes:
        device.memory_budget_bytes = max_bytes
    return device


def local_devices(fraction: float = 0.5, nvml: Any = None) -> list[LocalDevice]:
    """This machine's devices as a worker started with `--device auto` sees them: every NVIDIA
    GPU, else the CPU."""
    return nvidia_inventory(nvml) or [LocalDevice(cpu_device(fraction), unified_memory=True)]


def backend(device: pb.Device) -> str:
    return BACKENDS.get(device.kind, "unknown")
