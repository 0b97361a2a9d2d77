"""The bandwidth benchmark: the real CPU copy, the stored fingerprints, the CUDA probe built by
the real nvcc where there is one (and run where there is a GPU), and its output parsed."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import pytest

from meshllm.core.proto.mesh.v1 import common_pb2 as pb
from meshllm.worker import gpu_bench, gpus
from meshllm.worker.gpu_bench import BenchmarkError, Fingerprint, Measurement

MiB = 2**20
GiB = 2**30

H200 = pb.Device(
    id="GPU-5e8153a0-041a-19a0-67b4-ba8d9247bcf0",
    kind=pb.DEVICE_KIND_CUDA,
    name="NVIDIA H200",
    uuid="GPU-5e8153a0-041a-19a0-67b4-ba8d9247bcf0",
    pci_bus_id="00000000:00:06.0",
    memory_total_bytes=150754820096,
)
# What worker/gpu_bandwidth.cu printed for that H200 (CUDA 13.0, driver 580.159.04).
H200_PROBE_LINE = (
    '{"name": "NVIDIA H200", "pci_bus_id": "0000:00:06.0", "memory_total_bytes": 150754820096, '
    '"bytes": 1073741824, "repetitions": 20, "best_gbps": 4258.447, "median_gbps": 4242.832, '
    '"cuda_runtime": 13000, "cuda_driver": 13000}'
)


def test_stream_copy_counts_read_and_write() -> None:
    assert gpu_bench.stream_copy_gbps(10**9, 1.0) == 2.0
    assert gpu_bench.stream_copy_gbps(GiB, 0.5) == pytest.approx(4 * GiB / 1e9)


@pytest.mark.parametrize(
    ("llc", "available", "expected"),
    [
        pytest.param(32 * MiB, 23 * GiB, 256 * MiB, id="small cache: 256 MiB"),
        pytest.param(300 * MiB, 128 * GiB, 1200 * MiB, id="big cache: 4 x the cache"),
        pytest.param(0, 512 * MiB, 128 * MiB, id="little memory: a quarter of it"),
        pytest.param(0, 3 * MiB, MiB, id="almost none: 1 MiB"),
        pytest.param(100 * MiB + 3, 64 * GiB, 400 * MiB, id="whole MiB"),
    ],
)
def test_cpu_array_size(llc: int, available: int, expected: int) -> None:
    assert gpu_bench.cpu_array_bytes(llc, available) == expected


def test_last_level_cache_counts_each_shared_cache_once(tmp_path: Path) -> None:
    """Two L3 caches of 16 MiB, each shared by two CPUs, and a private L2 per CPU."""
    for cpu in range(4):
        for index, (level, size, shared) in enumerate(
            [(2, "1024K", str(cpu)), (3, "16M", "0-1" if cpu < 2 else "2-3")]
        ):
            d = tmp_path / f"cpu{cpu}" / "cache" / f"index{index}"
            d.mkdir(parents=True)
            (d / "level").write_text(f"{level}\n")
            (d / "size").write_text(f"{size}\n")
            (d / "shared_cpu_list").write_text(f"{shared}\n")
    assert gpu_bench.last_level_cache_bytes(tmp_path) == 32 * MiB
    assert gpu_bench.last_level_cache_bytes(tmp_path / "none") == 0


def test_the_cpu_copy_measures_this_machine() -> None:
    seen: list[tuple[int, float]] = []
    result = gpu_bench.measure_cpu(64 * MiB, 4, 2, lambda done, gbps: seen.append((done, gbps)))
    assert [done for done, _ in seen] == [1, 2, 3, 4]
    assert result.best_gbps == max(gbps for _, gbps in seen)
    assert result.best_gbps >= result.median_gbps > 0.1  # any machine copies 100 MB/s
    assert result.bytes_per_copy == 64 * MiB and result.repetitions == 4
    assert result.method == "numpy copy, 2 threads"


def figure(
    name: str = "NVIDIA H200", total: int = 150754820096, gbps: float = 4258.4
) -> Fingerprint:
    local = gpus.LocalDevice(
        pb.Device(
            kind=pb.DEVICE_KIND_CUDA,
            name=name,
            uuid=H200.uuid,
            pci_bus_id=H200.pci_bus_id,
            memory_total_bytes=total,
        ),
        unified_memory=False,
        driver_version="580.159.04",
    )
    measured = Measurement(gbps, gbps - 10, GiB, 20, "cudaMemcpy device-to-device")
    return gpu_bench.fingerprint(local, measured, now=0)


def test_a_fingerprint_names_the_device_and_the_time() -> None:
    f = figure()
    assert f.stable_id == f"uuid:{H200.uuid}" and f.backend == "cuda"
    assert (f.name, f.memory_total_bytes, f.driver_version) == (
        "NVIDIA H200",
        150754820096,
        "580.159.04",
    )
    assert f.measured_at == "1970-01-01T00:00:00Z" and f.bandwidth_gbps == 4258.4


def test_stored_figures_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "home" / "gpu-benchmark.json"
    assert gpu_bench.load(path) == {}
    gpu_bench.save({figure().stable_id: figure()}, path)
    assert gpu_bench.load(path) == {figure().stable_id: figure()}
    data = json.loads(path.read_text())
    assert data["version"] == 1 and data["devices"][f"uuid:{H200.uuid}"]["bandwidth_gbps"] == 4258.4
    assert [p.name for p in path.parent.iterdir()] == ["gpu-benchmark.json"]  # no temp file left


def test_a_figure_is_the_devices_only_while_its_fingerprint_matches(tmp_path: Path) -> None:
    path = tmp_path / "gpu-benchmark.json"
    gpu_bench.save({figure().stable_id: figure()}, path)
    assert gpu_bench.cached_gbps(H200, path) == 4258.4
    resized = pb.Device()
    resized.CopyFrom(H200)
    resized.memory_total_bytes = int(H200.memory_total_bytes * 1.005)  # driver reserve moved
    assert gpu_bench.cached_gbps(resized, path) == 4258.4
    swapped = pb.Device(name="NVIDIA H100 80GB HBM3", uuid=H200.uuid, memory_total_bytes=85 * 10**9)
    assert gpu_bench.cached_gbps(swapped, path) == 0.0
    other = pb.Device(
        name="NVIDIA H200", uuid="GPU-other", memory_total_bytes=H200.memory_total_bytes
    )
    assert gpu_bench.cached_gbps(other, path) == 0.0


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("{not json", id="not JSON"),
        pytest.param('{"version": 2, "devices": {}}', id="another version"),
        pytest.param('{"version": 1, "devices": {"x": {"name": "y"}}}', id="an entry cut short"),
        pytest.param("[]", id="a list"),
    ],
)
def test_a_damaged_file_is_named_and_the_worker_runs_unmeasured(
    tmp_path: Path, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "gpu-benchmark.json"
    path.write_text(text)
    with pytest.raises(BenchmarkError, match=f"^{path}: not a benchmark file"):
        gpu_bench.load(path)
    with caplog.at_level(logging.WARNING):
        assert gpu_bench.cached_gbps(H200, path) == 0.0
    assert str(path) in caplog.text


def test_fields_a_later_version_adds_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "gpu-benchmark.json"
    gpu_bench.save({figure().stable_id: figure()}, path)
    data = json.loads(path.read_text())
    data["devices"][figure().stable_id]["clock_mhz"] = 1980
    path.write_text(json.dumps(data))
    assert gpu_bench.load(path)[figure().stable_id] == figure()


def test_an_unwritable_place_is_one_error(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("a file where MESH_HOME should be a folder")
    with pytest.raises(BenchmarkError, match="cannot write it"):
        gpu_bench.save({}, home / "gpu-benchmark.json")


def test_the_file_lives_in_mesh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESH_HOME", str(tmp_path))
    assert gpu_bench.default_path() == tmp_path / "gpu-benchmark.json"


# --- the CUDA probe ---


def test_the_probe_output_is_read_for_the_right_gpu() -> None:
    result = gpu_bench.parse_probe_output(f"noise\n{H200_PROBE_LINE}\n", H200)
    assert (result.best_gbps, result.median_gbps) == (4258.447, 4242.832)
    assert result.bytes_per_copy == GiB and result.repetitions == 20
    other = pb.Device(name="NVIDIA H200", pci_bus_id="00000000:2A:00.0")
    with pytest.raises(
        BenchmarkError, match=re.escape("measured the GPU at 0000:00:06.0, not NVIDIA H200")
    ):
        gpu_bench.parse_probe_output(H200_PROBE_LINE, other)
    with pytest.raises(BenchmarkError, match="printed no result"):
        gpu_bench.parse_probe_output("Segmentation fault\n", H200)


def test_the_probe_runs_with_its_gpu_as_device_zero() -> None:
    env = gpu_bench.cuda_env(H200)
    assert env["CUDA_VISIBLE_DEVICES"] == H200.uuid and env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert gpu_bench.cuda_env(pb.Device(index=2))["CUDA_VISIBLE_DEVICES"] == "2"


def test_the_probe_cache_is_keyed_by_the_source(tmp_path: Path) -> None:
    source = tmp_path / "probe.cu"
    source.write_text("int main() { return 0; }\n")
    first = gpu_bench.probe_cache_dir(source)
    source.write_text("int main() { return 1; }\n")
    assert gpu_bench.probe_cache_dir(source) != first
    assert gpu_bench.probe_cache_dir().parent == Path.home() / ".cache/mesh-llm/gpu-bandwidth"


def test_without_nvcc_or_a_built_probe_it_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(BenchmarkError, match="no CUDA compiler \\(nvcc\\) on PATH"):
        gpu_bench.probe_binary(cache_dir=tmp_path / "cache")
    built = tmp_path / "cache" / gpu_bench.PROBE_NAME
    built.parent.mkdir()
    built.write_text("#!/bin/sh\n")
    built.chmod(0o755)
    assert gpu_bench.probe_binary(cache_dir=tmp_path / "cache") == built  # built earlier: used


NVCC = shutil.which("nvcc")
# the CUDA toolkit is not an apt package of this project's machines: without it the CUDA
# probe cannot be built, and only these three tests stand aside
NO_NVCC = "no CUDA compiler (nvcc) on this machine: the CUDA bandwidth probe cannot be built"
needs_nvcc = pytest.mark.skipif(NVCC is None, reason=NO_NVCC)


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if NVCC is None:
        pytest.skip(NO_NVCC)
    builds: list[str] = []
    cache = tmp_path_factory.mktemp("probe")
    binary = gpu_bench.probe_binary(cache_dir=cache, on_build=builds.append)
    again = gpu_bench.probe_binary(cache_dir=cache, on_build=builds.append)
    assert binary == again == cache / "gpu_bandwidth" and len(builds) == 1
    return binary


@needs_nvcc
def test_nvcc_builds_the_probe_once(probe: Path) -> None:
    assert probe.stat().st_mode & 0o111


@needs_nvcc
def test_a_source_nvcc_refuses_is_one_error(tmp_path: Path) -> None:
    source = tmp_path / "broken.cu"
    source.write_text("int main() { return undeclared; }\n")
    with pytest.raises(BenchmarkError, match=r"nvcc could not build broken\.cu: .*undeclared"):
        gpu_bench.probe_binary(source, cache_dir=tmp_path / "cache")


@needs_nvcc
def test_the_probe_measures_the_gpu_or_says_why_not(probe: Path) -> None:
    """On a GPU machine: a real figure for each GPU. Without one: CUDA's error, one line."""
    found = gpus.nvidia_devices()
    if not found:
        with pytest.raises(BenchmarkError) as raised:
            gpu_bench.measure_cuda(H200, probe, repetitions=2, buffer_mib=64)
        assert "\n" not in str(raised.value) and "cudaSetDevice" in str(raised.value)
        return
    for device in found:
        result = gpu_bench.measure_cuda(device, probe, repetitions=5, buffer_mib=256)
        assert result.best_gbps >= result.median_gbps > 50  # any CUDA GPU copies 50 GB/s
        assert result.bytes_per_copy == 256 * MiB
