"""A node with several GPUs runs a worker on each, as `mesh-llm serve` on a multi-GPU box does.
No GPU here: NVML answers from a stand-in library (tests/native/fake_nvml.c) that reports two
2 GiB GPUs, and the CPU build of llama-server runs each model on the CPU with the
CUDA_VISIBLE_DEVICES its worker gives it — which is what shows where a model was put."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from harness import ServeProcess, local_serve, mesh_llm
from helpers import cannot_run_here, descendants

pytestmark = pytest.mark.e2e

NATIVE = Path(__file__).resolve().parents[1] / "native"
GPU = "GPU-fa4e0000-0000-4000-8000-00000000000{}".format


@pytest.fixture(scope="module")
def two_gpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment under which NVML reports two GPUs."""
    if shutil.which("gcc") is None:
        cannot_run_here("gcc builds the NVML stand-in (make deps installs it)")
    lib = tmp_path_factory.mktemp("nvml") / "libnvidia-ml.so.1"
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O1", "-o", str(lib), str(NATIVE / "fake_nvml.c")],
        check=True,
    )
    return {"LD_LIBRARY_PATH": str(lib.parent), "FAKE_NVML_GPUS": "2", "FAKE_NVML_MIB": "2048"}


def replica_workers(node: ServeProcess) -> dict[str, list[str]]:
    models = httpx.get(f"{node.api}/models", timeout=10).json()["data"]
    return {m["id"]: sorted(r["worker"] for r in m["meshllm"]["replicas"]) for m in models}


def visible_devices(node: ServeProcess) -> dict[str, str]:
    """Each llama-server below the node: its model → its CUDA_VISIBLE_DEVICES."""
    found = {}
    for pid, command in descendants(node.pid).items():
        argv = command.split()
        if "--alias" not in argv or not argv[0].endswith("llama-server"):
            continue
        model = argv[argv.index("--alias") + 1]
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        found[model] = next(
            (v.split(b"=", 1)[1].decode() for v in environ if v.startswith(b"CUDA_VISIBLE")), ""
        )
    return found


def test_pinned_models_run_each_on_its_gpu(
    tmp_path: Path, two_gpus: dict[str, str], tiny_model: Path, chat_model: Path
) -> None:
    (tmp_path / "config.toml").write_text(
        "version = 1\n[gpu]\nassignment = 'pinned'\n"
        f"[[models]]\nmodel = '{tiny_model}'\ngpu_id = 'uuid:{GPU(1)}'\n"
        f"[[models]]\nmodel = '{chat_model}'\ngpu_id = 'pci:0000:01:00.0'\n"
    )
    node = local_serve(tmp_path / "state", env={"MESH_HOME": str(tmp_path), **two_gpus})
    try:
        node.wait_event("model_ready", count=2, timeout=180)
        assert replica_workers(node) == {tiny_model.stem: [GPU(1)], chat_model.stem: [GPU(0)]}
        assert visible_devices(node) == {tiny_model.stem: GPU(1), chat_model.stem: GPU(0)}
        logs = sorted(p.name for p in (tmp_path / "state" / "logs").glob("worker*.log"))
        assert logs == ["worker-0.log", "worker-1.log"]
        answer = node.client().chat.completions.create(
            model=chat_model.stem, max_tokens=4, messages=[{"role": "user", "content": "hi"}]
        )
        assert answer.choices[0].message.content
    finally:
        node.stop()


def test_device_flag_limits_the_workers_and_a_pin_it_leaves_out_stops_serve(
    tmp_path: Path, two_gpus: dict[str, str], tiny_model: Path
) -> None:
    node = local_serve(tmp_path / "one", tiny_model, extra=("--device", "1"), env={**two_gpus})
    try:
        node.wait_event("model_ready", timeout=180)
        assert replica_workers(node) == {tiny_model.stem: [GPU(1)]}
        logs = sorted(p.name for p in (tmp_path / "one" / "logs").glob("worker*.log"))
        assert logs == ["worker.log"]
    finally:
        node.stop()
    (tmp_path / "config.toml").write_text(
        "version = 1\n[gpu]\nassignment = 'pinned'\n"
        f"[[models]]\nmodel = '{tiny_model}'\ngpu_id = 'uuid:{GPU(1)}'\n"
    )
    done = subprocess.run(
        mesh_llm("serve", "--device", "0", "--state-dir", str(tmp_path / "two")),
        env={**os.environ, "MESH_HOME": str(tmp_path), **two_gpus},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert f"pinned to {GPU(1)}, which this node runs no worker on" in line
    assert not (tmp_path / "two").exists()  # nothing started
