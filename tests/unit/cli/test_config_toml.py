"""config.toml: what it may say, the precedence between it and the command line, and the
pinned GPU ids that fail closed."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshllm.cli.config_file import (
    ConfigError,
    enabled_plugins,
    load,
    stable_ids,
    startup_models,
)
from meshllm.cli.serve_options import node_workers
from meshllm.core.proto.mesh.v1 import common_pb2 as pb

H100_A = pb.Device(uuid="GPU-aaaa-1111", pci_bus_id="00000000:65:00.0", index=0)
H100_B = pb.Device(uuid="GPU-bbbb-2222", pci_bus_id="00000000:B3:00.0", index=1)
TWIN = pb.Device(uuid="GPU-aaaa-1111", pci_bus_id="00000000:66:00.0", index=2)  # a bad driver


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[gpu]\nassignment = 'auto'\n", "version = 1 is missing"),
        ("version = 2\n", "version must be 1"),
        ("version = 1\n[[models]\n", "not valid TOML"),
        ("version = 1\ncolour = 'red'\n", "colour: Extra inputs are not permitted"),
        ("version = 1\n[[models]]\nmodel = ''\n", "models.0.model"),
        ("version = 1\n[[models]]\nmodel = 'm'\nctx_size = 10\n", "models.0.ctx_size"),
        (
            "version = 1\n[gpu]\nassignment = 'pinned'\n[[models]]\nmodel = 'm'\n",
            "model 'm' has no gpu_id, and [gpu] assignment is pinned",
        ),
        (
            "version = 1\n[[models]]\nmodel = 'm'\ngpu_id = 'uuid:GPU-x'\n",
            "but [gpu] assignment is auto",
        ),
        ("version = 1\n[gpu]\nassignment = 'sometimes'\n", "gpu.assignment"),
        ("version = 1\n[[plugin]]\nname = 'p'\n", "plugin.0.command: Field required"),
        ("version = 1\n[[plugin]]\nname = '../p'\ncommand = 'x'\n", "plugin.0.name"),
        (
            "version = 1\n[[plugin]]\nname = 'p'\ncommand = 'x'\n"
            "[[plugin]]\nname = 'p'\ncommand = 'y'\n",
            "plugin 'p' is listed twice",
        ),
    ],
)
def test_a_bad_file_is_one_line_naming_it(tmp_path: Path, text: str, message: str) -> None:
    path = config(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load(path)
    line = str(caught.value)
    assert line.startswith(str(path)) and message in line and "\n" not in line


def test_no_file_is_no_config(tmp_path: Path) -> None:
    assert load(tmp_path / "none.toml") is None


FULL = """
version = 1
[gpu]
assignment = "auto"
[[models]]
model = "Qwen2.5-3B"
ctx_size = 8192
draft = "Qwen2.5-0.5B"
[[models]]
model = "org/repo/vision.gguf"
mmproj = "org/repo/mmproj.gguf"
[[plugin]]
name = "demo"
command = "/bin/true"
"""


def nothing() -> list[pb.Device]:
    raise AssertionError("devices are read only for a pinned config")


def test_the_config_is_what_serve_starts_with(tmp_path: Path) -> None:
    path = config(tmp_path, FULL)
    chosen = startup_models([], 0, load(path), path, nothing)
    assert chosen.models == ["Qwen2.5-3B", "org/repo/vision.gguf"]
    assert chosen.contexts == {"Qwen2.5-3B": 8192} and chosen.pins == {}
    assert chosen.projectors == {"org/repo/vision.gguf": "org/repo/mmproj.gguf"}
    assert chosen.drafts == {"Qwen2.5-3B": "Qwen2.5-0.5B"}
    assert chosen.notes == []


def test_plugins_are_the_enabled_entries(tmp_path: Path) -> None:
    path = config(
        tmp_path,
        "version = 1\n[[plugin]]\nname = 'on'\ncommand = 'a'\nenv = { K = 'v' }\n"
        "[[plugin]]\nname = 'off'\ncommand = 'b'\nenabled = false\n",
    )
    (plugin,) = enabled_plugins(load(path))
    assert (plugin.name, plugin.command, plugin.args, plugin.env) == ("on", "a", [], {"K": "v"})
    assert enabled_plugins(None) == []


def test_models_on_the_command_line_ignore_the_configured_ones(tmp_path: Path) -> None:
    path = config(tmp_path, FULL)
    chosen = startup_models(["smollm2"], 0, load(path), path, nothing)
    assert chosen.models == ["smollm2"] and chosen.contexts == {} and chosen.pins == {}
    assert chosen.notes == [f"--model/--gguf given: the models in {path} are not started"]


def test_the_context_flag_overrides_every_ctx_size(tmp_path: Path) -> None:
    path = config(tmp_path, FULL)
    assert startup_models([], 2048, load(path), path, nothing).contexts == {}


def pinned(tmp_path: Path, *ids: str) -> Path:
    models = "".join(f"[[models]]\nmodel = 'm{i}'\ngpu_id = '{g}'\n" for i, g in enumerate(ids))
    return config(tmp_path, f"version = 1\n[gpu]\nassignment = 'pinned'\n{models}")


A, B = "GPU-aaaa-1111", "GPU-bbbb-2222"


@pytest.mark.parametrize(
    ("ids", "devices", "pins", "message"),
    [
        (("uuid:GPU-bbbb-2222",), [H100_A, H100_B], {"m0": [B]}, ""),
        (("pci:0000:65:00.0",), [H100_A, H100_B], {"m0": [A]}, ""),
        (("PCI:0000:B3:00.0", "uuid:GPU-bbbb-2222"), [H100_A, H100_B], {"m0": [B], "m1": [B]}, ""),
        # models on different GPUs: each runs on its own GPU's worker
        (
            ("uuid:GPU-aaaa-1111", "uuid:GPU-bbbb-2222"),
            [H100_A, H100_B],
            {"m0": [A], "m1": [B]},
            "",
        ),
        (("index:0",), [H100_A], {}, "is not a stable id"),
        (("CUDA0",), [H100_A], {}, "is not a stable id"),
        (("uuid:GPU-gone",), [H100_A, H100_B], {}, "no device here has gpu_id 'uuid:GPU-gone'"),
        (("uuid:GPU-aaaa-1111",), [], {}, "no device here has gpu_id"),
        (("uuid:GPU-aaaa-1111",), [H100_A, TWIN], {}, "is ambiguous"),
    ],
)
def test_pinned_ids_resolve_or_fail_closed(
    tmp_path: Path,
    ids: tuple[str, ...],
    devices: list[pb.Device],
    pins: dict[str, list[str]],
    message: str,
) -> None:
    path = pinned(tmp_path, *ids)
    if message:
        with pytest.raises(ConfigError, match=message):
            startup_models([], 0, load(path), path, lambda: devices)
    else:
        assert startup_models([], 0, load(path), path, lambda: devices).pins == pins


def test_a_model_pinned_to_two_gpus_runs_on_both(tmp_path: Path) -> None:
    text = (
        "version = 1\n[gpu]\nassignment = 'pinned'\n"
        "[[models]]\nmodel = 'm'\ngpu_id = 'uuid:GPU-aaaa-1111'\n"
        "[[models]]\nmodel = 'm'\ngpu_id = 'pci:0000:b3:00.0'\n"
    )
    path = config(tmp_path, text)
    chosen = startup_models([], 0, load(path), path, lambda: [H100_A, H100_B])
    assert chosen.models == ["m"] and chosen.pins == {"m": [A, B]}


@pytest.mark.parametrize(
    ("devices", "models", "pins", "expected"),
    [
        # no pins: every worker pins every model of the node, placement picks the device
        (["cpu"], ["m"], {}, [("cpu", ["m"])]),
        ([A, B], ["m", "n"], {}, [(A, ["m", "n"]), (B, ["m", "n"])]),
        # pins: each worker its own; a GPU no model names has none and serves the mesh
        ([A, B], ["m", "n"], {"m": [A], "n": [A]}, [(A, ["m", "n"]), (B, [])]),
        ([A, B], ["m"], {"m": [A, B]}, [(A, ["m"]), (B, ["m"])]),
    ],
)
def test_a_node_runs_a_worker_per_device(
    devices: list[str],
    models: list[str],
    pins: dict[str, list[str]],
    expected: list[tuple[str, list[str]]],
) -> None:
    parts = node_workers(devices, models, pins)
    assert [(p.device, p.pins(models)) for p in parts] == expected
    assert all(p.pinned == bool(pins) for p in parts)


def test_a_pinned_gpu_left_out_of_the_device_flag_stops_serve() -> None:
    with pytest.raises(ValueError, match=f"m is pinned to {B}, which this node runs no worker on"):
        node_workers([A], ["m"], {"m": [B]})


def test_stable_ids_are_the_uuid_and_the_usual_pci_address() -> None:
    assert stable_ids(H100_A) == ["uuid:GPU-aaaa-1111", "pci:0000:65:00.0"]
    assert stable_ids(pb.Device(index=0)) == []
