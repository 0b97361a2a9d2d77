"""`mesh-llm gpus` and `mesh-llm gpu benchmark`: this machine's devices as its worker sees them
(the stable ids a config pins models by, memory, unified memory, measured bandwidth), and
measuring the memory bandwidth that placement prefers."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .common import Subcommands, fail, help_of

if TYPE_CHECKING:
    from meshllm.worker.gpu_bench import Fingerprint, Measurement
    from meshllm.worker.gpus import LocalDevice

GPUS_HELP = """\
This machine's devices, as a worker started with `--device auto` sees them: every NVIDIA
GPU (through NVML), else the CPU.

  ID         a stable id: uuid:GPU-… (NVML's UUID), else pci:0000:… (the PCI address).
             `index:N` and `cpu:0` can change between boots: not pinnable (PIN no).
             [gpu] assignment = "pinned" in config.toml takes pinnable ids only.
  UNIFIED    the CPU and the device address one memory: the CPU itself, an integrated
             GPU (NVML has no memory figures for it; its memory is then the system's),
             a GPU whose NVML memory total is the system's, or one that reaches system
             memory coherently (ATS addressing, NVLink-C2C: Grace Hopper/Blackwell).
  BANDWIDTH  from the last `mesh-llm gpu benchmark` (stored in $MESH_HOME/gpu-benchmark.json,
             default ~/.mesh-llm), or "not measured".
"""

BENCHMARK_HELP = """\
Measure the memory bandwidth of each device `mesh-llm gpus` lists, store it in
$MESH_HOME/gpu-benchmark.json (default ~/.mesh-llm) with the device's name, memory total
and driver version, and let this machine's worker publish it at its next start: among the
workers a model fits, placement prefers the highest bandwidth.

How it is counted: each copy of an N-byte buffer counts 2 x N bytes (N read, N written),
as STREAM's copy does; GB/s = 10^9 bytes/s; the figure is the best of --repetitions
copies (the median is stored too).

  CPU         numpy copies between two arrays (at least 256 MiB and 4 x the last-level
              cache), one thread per CPU this process may use.
  NVIDIA GPU  cudaMemcpy device-to-device between two 1 GiB buffers, timed with CUDA
              events (worker/gpu_bandwidth.cu, built once with nvcc into
              ~/.cache/mesh-llm/gpu-bandwidth/).
"""


def add_parser(commands: Subcommands) -> None:
    gpus = commands.add_parser(
        "gpus",
        help="list this machine's devices: stable ids, memory, measured bandwidth",
        description=GPUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    gpus.add_argument("--json", action="store_true", help="print JSON (a list of devices)")
    gpus.set_defaults(run=run_list)
    gpu = commands.add_parser(
        "gpu",
        help="measure this machine's devices (gpu benchmark)",
        description="Tools for this machine's devices; `mesh-llm gpus` lists them.",
    )
    tools = gpu.add_subparsers(dest="gpu_command", metavar="TOOL")
    benchmark = tools.add_parser(
        "benchmark",
        help="measure each device's memory bandwidth and store it",
        description=BENCHMARK_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    benchmark.add_argument(
        "--repetitions", type=int, default=20, metavar="N", help="timed copies per device (20)"
    )
    benchmark.add_argument(
        "--size-mib",
        type=int,
        default=0,
        metavar="MIB",
        help="the buffer each copy reads (default: see above; a GPU's shrinks to fit)",
    )
    benchmark.add_argument("--json", action="store_true", help="print JSON")
    benchmark.set_defaults(run=run_benchmark)
    gpu.set_defaults(run=lambda args: help_of(gpu))


def run_list(args: argparse.Namespace) -> int:
    from meshllm.worker import gpu_bench
    from meshllm.worker.gpus import local_devices

    try:
        figures = gpu_bench.load()
    except gpu_bench.BenchmarkError as exc:
        return fail(str(exc))
    rows = [describe(local, gpu_bench.cached(local.device, figures)) for local in local_devices()]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print_table(rows)
    return 0


def describe(local: LocalDevice, figure: Fingerprint | None) -> dict[str, Any]:
    """One device as `gpus --json` prints it."""
    from meshllm.core.devices import stable_id
    from meshllm.core.proto.mesh.v1 import common_pb2 as pb
    from meshllm.worker.gpus import backend

    device = local.device
    ident, pinnable = stable_id(device)
    bandwidth = None
    if figure is not None:
        bandwidth = {
            "gbps": figure.bandwidth_gbps,
            "median_gbps": figure.median_gbps,
            "measured_at": figure.measured_at,
            "method": figure.method,
        }
    return {
        "id": ident,
        "pinnable": pinnable,
        "backend": backend(device),
        "name": device.name,
        "index": device.index if device.kind != pb.DEVICE_KIND_CPU else None,
        "uuid": device.uuid or None,
        "pci_bus_id": device.pci_bus_id or None,
        "memory_total_bytes": device.memory_total_bytes,
        "memory_free_bytes": device.memory_free_bytes,
        "unified_memory": local.unified_memory,
        "driver_version": local.driver_version or None,
        "bandwidth": bandwidth,
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    header = ["ID", "PIN", "BACKEND", "NAME", "FREE / TOTAL", "UNIFIED", "BANDWIDTH"]
    lines = [header]
    for r in rows:
        free, total = r["memory_free_bytes"] / 2**30, r["memory_total_bytes"] / 2**30
        lines.append(
            [
                r["id"],
                "yes" if r["pinnable"] else "no",
                r["backend"],
                r["name"],
                f"{free:.1f} / {total:.1f} GiB",
                "yes" if r["unified_memory"] else "no",
                _bandwidth_text(r["bandwidth"]),
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
    if not all(r["pinnable"] for r in rows):
        print("\nPIN no: the id can change between boots; a pinned config cannot use it.")
    if any(r["bandwidth"] is None for r in rows):
        print("Not measured: `mesh-llm gpu benchmark` measures and stores the bandwidth.")


def _bandwidth_text(bandwidth: dict[str, Any] | None) -> str:
    if bandwidth is None:
        return "not measured"
    return f"{bandwidth['gbps']:.1f} GB/s ({_local_time(bandwidth['measured_at'])})"


def _local_time(iso: str) -> str:
    try:
        when = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    return when.astimezone().strftime("%Y-%m-%d %H:%M")


def run_benchmark(args: argparse.Namespace) -> int:
    from meshllm.core.devices import stable_id
    from meshllm.core.proto.mesh.v1 import common_pb2 as pb
    from meshllm.worker import gpu_bench
    from meshllm.worker.gpus import local_devices

    if not 1 <= args.repetitions <= 10_000:
        return fail(f"--repetitions {args.repetitions}: give 1 to 10000 copies")
    if args.size_mib < 0:
        return fail(f"--size-mib {args.size_mib}: give a size in MiB, or leave it out")
    path = gpu_bench.default_path()
    if path.parent.exists() and not path.parent.is_dir():
        return fail(f"{path.parent} (MESH_HOME) is not a directory: cannot store {path.name}")
    try:
        figures = gpu_bench.load(path)
    except gpu_bench.BenchmarkError as exc:
        say(f"note: {exc}")
        figures = {}
    devices = local_devices()
    cpu_bytes = 0
    cpu = next((d.device for d in devices if d.device.kind == pb.DEVICE_KIND_CPU), None)
    if cpu is not None:
        cpu_bytes = _cpu_bytes(args.size_mib, cpu.memory_free_bytes)
        if cpu_bytes <= 0:
            return fail(
                f"--size-mib {args.size_mib}: two arrays of that size do not fit in half of "
                f"the {cpu.memory_free_bytes // gpu_bench.MiB} MiB available"
            )
    try:
        probe = None
        if any(d.device.kind == pb.DEVICE_KIND_CUDA for d in devices):
            probe = gpu_bench.probe_binary(on_build=None if args.json else say)
        measured = []
        for local in devices:
            ident = stable_id(local.device)[0]
            result = _measure(local, ident, args, cpu_bytes, probe)
            figure = gpu_bench.fingerprint(local, result)
            figures[ident] = figure
            measured.append(figure)
        gpu_bench.save(figures, path)
    except gpu_bench.BenchmarkError as exc:
        return fail(str(exc))
    if args.json:
        print(json.dumps({"file": str(path), "devices": [asdict(f) for f in measured]}, indent=2))
    else:
        for f in measured:
            print(f"{f.stable_id}  {f.name}  {f.bandwidth_gbps:.1f} GB/s ({f.method})")
        print(f"stored in {path}; `mesh-llm gpus` shows it, a worker publishes it at its start")
    return 0


def _cpu_bytes(size_mib: int, available: int) -> int:
    from meshllm.worker import gpu_bench

    if size_mib == 0:
        return gpu_bench.cpu_array_bytes(gpu_bench.last_level_cache_bytes(), available)
    wanted = size_mib * gpu_bench.MiB
    return wanted if 4 * wanted <= available else 0


def _measure(
    local: LocalDevice, ident: str, args: argparse.Namespace, cpu_bytes: int, probe: Path | None
) -> Measurement:
    from meshllm.core.proto.mesh.v1 import common_pb2 as pb
    from meshllm.worker import gpu_bench

    device = local.device
    reps = args.repetitions
    live = sys.stderr.isatty() and not args.json

    def progress(done: int, gbps: float) -> None:
        if live:
            print(f"\r  {done}/{reps} copies, last {gbps:.1f} GB/s ", end="", file=sys.stderr)

    if device.kind == pb.DEVICE_KIND_CPU:
        threads = gpu_bench.cpu_threads()
        say(
            f"measuring {ident} ({device.name}): {reps} copies of {cpu_bytes // gpu_bench.MiB} "
            f"MiB on {threads} thread{'s' if threads > 1 else ''}…"
        )
        result = gpu_bench.measure_cpu(cpu_bytes, reps, threads, progress)
    elif device.kind == pb.DEVICE_KIND_CUDA and probe is not None:
        size = args.size_mib or gpu_bench.GPU_BUFFER_MIB
        say(f"measuring {ident} ({device.name}): {reps} device-to-device copies of {size} MiB…")
        result = gpu_bench.measure_cuda(device, probe, reps, size)
    else:
        raise gpu_bench.BenchmarkError(f"{ident}: no benchmark for {device.name} yet")
    if live:
        print("\r\033[K", end="", file=sys.stderr)
    say(f"  {ident}: {result.best_gbps:.1f} GB/s best, {result.median_gbps:.1f} median")
    return result


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
