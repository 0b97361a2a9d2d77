"""Memory bandwidth of this machine's devices: measured by `mesh-llm gpu benchmark`, kept in
`$MESH_HOME/gpu-benchmark.json` (default ~/.mesh-llm) keyed by each device's stable id, and
read by the worker at start so its `Device.memory_bandwidth_gbps` reaches the scheduler.

How a figure is counted: one copy of an N-byte buffer moves 2·N bytes (N read, N written),
as STREAM's copy counts it; GB/s is 10^9 bytes per second; the figure is the best of the
repetitions (STREAM's "best rate"), the median is kept beside it.

- CPU: numpy copies between two arrays of at least 256 MiB and 4 x the last-level cache
  (STREAM's rule), split across the CPUs this process may run on, one thread each.
- NVIDIA GPU: `worker/gpu_bandwidth.cu` (cudaMemcpy device-to-device between two buffers,
  timed with CUDA events), built once with nvcc into ~/.cache/mesh-llm/gpu-bandwidth/<hash of
  the source>/ and run with CUDA_VISIBLE_DEVICES set to the device's UUID.

A stored figure is the device's only while its fingerprint matches: the same name and memory
total (within 1 %); a GPU swapped into the same PCI slot is "not measured" again."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from meshllm.core.devices import stable_id
from meshllm.core.proto.mesh.v1 import common_pb2 as pb

from .gpus import LocalDevice, backend

logger = logging.getLogger(__name__)

MiB = 2**20
FILE_NAME = "gpu-benchmark.json"
FILE_VERSION = 1
SOURCE = Path(__file__).with_name("gpu_bandwidth.cu")  # package data: installs carry it
PROBE_NAME = "gpu_bandwidth"
CPU_MIN_ARRAY_BYTES = 256 * MiB
GPU_BUFFER_MIB = 1024
DEFAULT_REPETITIONS = 20
PROBE_TIMEOUT_S = 300
SAME_MEMORY = 0.01  # a memory total this close to the stored one is the same device's

Progress = Callable[[int, float], None]  # (repetitions done, that one's GB/s)


class BenchmarkError(Exception):
    """One line: what could not be measured, read or stored, and why."""


@dataclass(frozen=True)
class Measurement:
    best_gbps: float
    median_gbps: float
    bytes_per_copy: int  # the buffer copied: each copy reads and writes this many bytes
    repetitions: int
    method: str


@dataclass(frozen=True)
class Fingerprint:
    """A device's stored figure, with what identifies the device it was measured on."""

    stable_id: str
    name: str
    backend: str
    memory_total_bytes: int
    driver_version: str
    bandwidth_gbps: float  # the best of the repetitions
    median_gbps: float
    bytes_per_copy: int
    repetitions: int
    method: str
    measured_at: str  # ISO 8601, UTC

    def matches(self, device: pb.Device) -> bool:
        total = device.memory_total_bytes
        return self.name == device.name and abs(
            self.memory_total_bytes - total
        ) <= SAME_MEMORY * max(total, 1)


def default_path() -> Path:
    return Path(os.environ.get("MESH_HOME", "~/.mesh-llm")).expanduser() / FILE_NAME


def stream_copy_gbps(bytes_per_copy: int, seconds: float) -> float:
    """STREAM's copy rate: the bytes read plus the bytes written, in GB/s."""
    return 2 * bytes_per_copy / seconds / 1e9


def fingerprint(local: LocalDevice, measured: Measurement, now: float | None = None) -> Fingerprint:
    device = local.device
    when = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    return Fingerprint(
        stable_id=stable_id(device)[0],
        name=device.name,
        backend=backend(device),
        memory_total_bytes=device.memory_total_bytes,
        driver_version=local.driver_version,
        bandwidth_gbps=round(measured.best_gbps, 3),
        median_gbps=round(measured.median_gbps, 3),
        bytes_per_copy=measured.bytes_per_copy,
        repetitions=measured.repetitions,
        method=measured.method,
        measured_at=when.isoformat(timespec="seconds").replace("+00:00", "Z"),
    )


# --- the stored figures ---


def load(path: Path | None = None) -> dict[str, Fingerprint]:
    """The stored figures by stable id; {} when nothing was measured yet."""
    path = path or default_path()
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise BenchmarkError(f"{path}: cannot read it ({exc.strerror})") from exc
    try:
        data = json.loads(text)
        if data.get("version") != FILE_VERSION:
            raise ValueError(f"version {data.get('version')!r}, expected {FILE_VERSION}")
        known = {f.name for f in fields(Fingerprint)}
        return {
            key: Fingerprint(**{k: v for k, v in entry.items() if k in known})
            for key, entry in data["devices"].items()
        }
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise BenchmarkError(
            f"{path}: not a benchmark file ({exc}); run `mesh-llm gpu benchmark` to replace it"
        ) from exc


def save(figures: dict[str, Fingerprint], path: Path | None = None) -> Path:
    """Writes the figures (whole, through a temporary file: never half a file)."""
    path = path or default_path()
    data = {"version": FILE_VERSION, "devices": {k: asdict(v) for k, v in sorted(figures.items())}}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise BenchmarkError(f"{path}: cannot write it ({exc.strerror})") from exc
    return path


def cached(device: pb.Device, figures: dict[str, Fingerprint]) -> Fingerprint | None:
    """The stored figure of this device, if it was measured on this very device."""
    found = figures.get(stable_id(device)[0])
    return found if found is not None and found.matches(device) else None


def cached_gbps(device: pb.Device, path: Path | None = None) -> float:
    """What the worker publishes: the device's stored figure, 0 when it has none (an
    unreadable file is logged, not fatal: the worker runs, unmeasured)."""
    try:
        found = cached(device, load(path))
    except BenchmarkError as exc:
        logger.warning("bandwidth not known: %s", exc)
        return 0.0
    return found.bandwidth_gbps if found is not None else 0.0


# --- CPU ---


def last_level_cache_bytes(root: Path = Path("/sys/devices/system/cpu")) -> int:
    """The last-level caches of all CPUs together (each shared cache counted once); 0 when
    sysfs does not say."""
    caches: dict[int, dict[str, int]] = {}
    for index in root.glob("cpu[0-9]*/cache/index[0-9]*"):
        try:
            level = int((index / "level").read_text())
            size = _size((index / "size").read_text())
            shared = (index / "shared_cpu_list").read_text().strip()
        except (OSError, ValueError):
            continue
        caches.setdefault(level, {})[shared] = size
    return sum(caches[max(caches)].values()) if caches else 0


def _size(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
    return int(text.rstrip("KMG")) * scale


def cpu_array_bytes(llc_bytes: int, available_bytes: int) -> int:
    """STREAM's size rule (each array ≥ 4 x the last-level cache), at least 256 MiB, and the
    two arrays within half of the available memory; whole MiB."""
    wanted = max(CPU_MIN_ARRAY_BYTES, 4 * llc_bytes)
    return max(MiB, min(wanted, available_bytes // 4) // MiB * MiB)


def cpu_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def measure_cpu(
    array_bytes: int,
    repetitions: int = DEFAULT_REPETITIONS,
    threads: int | None = None,
    progress: Progress | None = None,
) -> Measurement:
    """STREAM's copy with numpy: `threads` threads each copy their slice of one array into
    the other (numpy releases the GIL while it copies); one warm-up copy first."""
    import numpy as np

    threads = threads or cpu_threads()
    n = array_bytes // 8
    src = np.ones(n, dtype=np.float64)
    dst = np.zeros(n, dtype=np.float64)
    step = -(-n // threads)
    slices = [(dst[i : i + step], src[i : i + step]) for i in range(0, n, step)]
    rates = []
    with ThreadPoolExecutor(len(slices)) as pool:

        def copy() -> float:
            start = time.perf_counter()
            for _ in pool.map(lambda pair: np.copyto(*pair), slices):
                pass
            return time.perf_counter() - start

        copy()
        for i in range(repetitions):
            rates.append(stream_copy_gbps(n * 8, copy()))
            if progress is not None:
                progress(i + 1, rates[-1])
    if not np.array_equal(dst[:: max(1, n // 1024)], src[:: max(1, n // 1024)]):
        raise BenchmarkError("the CPU copy did not copy: the figure would mean nothing")
    method = f"numpy copy, {len(slices)} thread{'s' if len(slices) > 1 else ''}"
    return Measurement(max(rates), statistics.median(rates), n * 8, repetitions, method)


# --- NVIDIA GPUs ---


def probe_cache_dir(source: Path = SOURCE) -> Path:
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    return Path.home() / ".cache" / "mesh-llm" / "gpu-bandwidth" / digest


def probe_binary(
    source: Path = SOURCE,
    cache_dir: Path | None = None,
    nvcc: str | None = None,
    on_build: Callable[[str], None] | None = None,
) -> Path:
    """The built CUDA probe for this source: from the cache (keyed by the source's hash),
    else built now with nvcc (`nvcc`, else the one on PATH)."""
    if not source.is_file():
        raise BenchmarkError(f"the CUDA probe's source {source} is missing")
    directory = cache_dir or probe_cache_dir(source)
    binary = directory / PROBE_NAME
    if os.access(binary, os.X_OK):
        return binary
    compiler = nvcc or shutil.which("nvcc")
    if compiler is None:
        raise BenchmarkError(
            f"no CUDA compiler (nvcc) on PATH and no built probe at {binary}: install the "
            "CUDA toolkit (or put its bin/ on PATH) to measure NVIDIA GPUs"
        )
    if on_build is not None:
        on_build(f"building the bandwidth probe with {compiler} (once) into {directory}")
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{PROBE_NAME}.{os.getpid()}.tmp"
    try:
        done = subprocess.run(
            [compiler, "-O2", "-o", str(tmp), str(source)],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
        )
        if done.returncode != 0:
            raise BenchmarkError(f"nvcc could not build {source.name}: {_first_error(done.stderr)}")
        tmp.replace(binary)
    finally:
        tmp.unlink(missing_ok=True)
    return binary


def cuda_env(device: pb.Device) -> dict[str, str]:
    """The environment that makes `device` the probe's device 0 (by UUID where known, so
    CUDA's own device order does not matter)."""
    visible = device.uuid or str(device.index)
    return {**os.environ, "CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": visible}


def parse_probe_output(stdout: str, device: pb.Device) -> Measurement:
    """The probe's JSON line, checked to be about `device` (the same PCI address)."""
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    try:
        data: dict[str, Any] = json.loads(lines[-1])
        best, median = float(data["best_gbps"]), float(data["median_gbps"])
        size, repetitions = int(data["bytes"]), int(data["repetitions"])
    except (IndexError, ValueError, KeyError, TypeError) as exc:
        raise BenchmarkError(f"the CUDA probe printed no result: {stdout.strip()[:200]!r}") from exc
    if device.pci_bus_id and _pci(data.get("pci_bus_id", "")) != _pci(device.pci_bus_id):
        raise BenchmarkError(
            f"the CUDA probe measured the GPU at {data.get('pci_bus_id')}, not {device.name} "
            f"at {device.pci_bus_id}"
        )
    if best <= 0:
        raise BenchmarkError(f"the CUDA probe measured {best} GB/s on {device.name}")
    return Measurement(best, median, size, repetitions, "cudaMemcpy device-to-device")


def measure_cuda(
    device: pb.Device,
    binary: Path,
    repetitions: int = DEFAULT_REPETITIONS,
    buffer_mib: int = GPU_BUFFER_MIB,
) -> Measurement:
    try:
        done = subprocess.run(
            [str(binary), str(buffer_mib), str(repetitions)],
            capture_output=True,
            text=True,
            env=cuda_env(device),
            timeout=PROBE_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BenchmarkError(f"the CUDA probe {binary} did not run: {exc}") from exc
    if done.returncode != 0:
        raise BenchmarkError(f"{device.name}: {_last_line(done.stderr) or 'the probe failed'}")
    return parse_probe_output(done.stdout, device)


def _pci(bus_id: str) -> str:
    """A PCI address as CUDA and NVML both write it: '00000000:18:00.0' = '0000:18:00.0'."""
    domain, _, rest = bus_id.strip().lower().partition(":")
    try:
        return f"{int(domain, 16):x}:{rest}"
    except ValueError:
        return bus_id.strip().lower()


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _first_error(text: str) -> str:
    errors = [line.strip() for line in text.splitlines() if "error" in line.lower()]
    return errors[0] if errors else _last_line(text)
