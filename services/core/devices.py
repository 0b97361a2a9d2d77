"""A device's stable id, which the worker pins and benchmarks by and the console shows: one
rule for every service (core imports no service)."""

from __future__ import annotations

from meshllm.core.proto.mesh.v1 import common_pb2 as pb

__all__ = ["pci_id", "stable_id"]


def stable_id(device: pb.Device) -> tuple[str, bool]:
    """The device's id for pinning and for its stored benchmark, and whether it is pinnable:
    `uuid:GPU-…`, else `pci:0000:18:00.0` (NVML's 8-digit domain written as the usual 4, as
    lspci does); `cpu:0` and `index:N` can change between boots and are not pinnable."""
    if device.uuid:
        return f"uuid:{device.uuid}", True
    if device.pci_bus_id:
        return pci_id(device.pci_bus_id), True
    if device.kind == pb.DEVICE_KIND_CPU:
        return "cpu:0", False
    return f"index:{device.index}", False


def pci_id(bus_id: str) -> str:
    """`pci:0000:18:00.0` for NVML's `00000000:18:00.0` (its 8-digit domain as the usual 4)."""
    domain, _, rest = bus_id.partition(":")
    if rest:
        return f"pci:{int(domain, 16):04x}:{rest}".lower()
    return f"pci:{domain}".lower()
