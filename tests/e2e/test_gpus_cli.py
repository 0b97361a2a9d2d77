"""`mesh-llm gpus` and `mesh-llm gpu benchmark` as a user runs them, in a fresh MESH_HOME: the
benchmark measures this machine for real and stores the figure, and `gpus` shows it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
MESH_LLM = [sys.executable, "-m", "meshllm.cli"]


def run(home: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MESH_LLM, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "MESH_HOME": str(home)},
    )


def one_line_error(done: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mesh-llm: error: "), done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    for fragment in fragments:
        assert fragment in lines[0]


def test_benchmark_stores_a_figure_that_gpus_then_shows(tmp_path: Path) -> None:
    home = tmp_path / "home"
    before = run(home, "gpus", "--json")
    assert before.returncode == 0, before.stderr
    devices = json.loads(before.stdout)
    assert devices and all(d["bandwidth"] is None for d in devices)
    for d in devices:
        assert d["backend"] in ("cuda", "cpu") and d["memory_total_bytes"] > 0
        assert d["pinnable"] == d["id"].startswith(("uuid:", "pci:"))
        assert isinstance(d["unified_memory"], bool)
        if d["backend"] == "cpu":
            assert d["id"] == "cpu:0" and d["unified_memory"] and not d["pinnable"]

    bench = run(home, "gpu", "benchmark", "--json", "--repetitions", "5")
    assert bench.returncode == 0, bench.stderr
    assert "measuring " in bench.stderr  # feedback while it measures
    result = json.loads(bench.stdout)
    stored = json.loads((home / "gpu-benchmark.json").read_text())
    assert result["file"] == str(home / "gpu-benchmark.json")
    assert sorted(f["stable_id"] for f in result["devices"]) == sorted(d["id"] for d in devices)
    for f in result["devices"]:
        assert f["bandwidth_gbps"] >= f["median_gbps"] > 0.1 and f["repetitions"] == 5
        assert stored["devices"][f["stable_id"]]["bandwidth_gbps"] == f["bandwidth_gbps"]

    after = run(home, "gpus", "--json")
    figures = {f["stable_id"]: f for f in result["devices"]}
    for d in json.loads(after.stdout):
        assert d["bandwidth"]["gbps"] == figures[d["id"]]["bandwidth_gbps"]
        assert d["bandwidth"]["measured_at"] == figures[d["id"]]["measured_at"]
    table = run(home, "gpus")
    assert table.returncode == 0 and "GB/s" in table.stdout and "not measured" not in table.stdout


def test_the_table_says_what_is_not_measured_and_not_pinnable(tmp_path: Path) -> None:
    done = run(tmp_path, "gpus")
    assert done.returncode == 0, done.stderr
    header = done.stdout.splitlines()[0].split()
    assert header[:3] == ["ID", "PIN", "BACKEND"] and "UNIFIED" in header
    assert "not measured" in done.stdout
    if "cpu:0" in done.stdout:
        assert "PIN no: the id can change between boots" in done.stdout


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--repetitions", "0"], ["--repetitions 0"]),
        (["--size-mib", "-1"], ["--size-mib -1"]),
    ],
)
def test_bad_benchmark_flags_are_one_line(
    tmp_path: Path, args: list[str], fragments: list[str]
) -> None:
    done = run(tmp_path, "gpu", "benchmark", *args)
    one_line_error(done, *fragments)
    assert not (tmp_path / "gpu-benchmark.json").exists()


def test_mesh_home_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("not a folder")
    one_line_error(run(home, "gpu", "benchmark"), str(home), "not a directory")


def test_a_damaged_benchmark_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "gpu-benchmark.json").write_text("{half a file")
    one_line_error(run(tmp_path, "gpus"), str(tmp_path / "gpu-benchmark.json"), "gpu benchmark")


def test_gpu_alone_shows_its_tools(tmp_path: Path) -> None:
    done = run(tmp_path, "gpu")
    assert done.returncode == 0 and "benchmark" in done.stdout
    described = run(tmp_path, "gpu", "benchmark", "--help")
    assert "2 x N bytes (N read, N written)" in described.stdout
