"""`~/.mesh-llm/config.toml` (`serve --config PATH` for another): the models a node serves
when started with no model on its command line.

    version = 1

    [gpu]
    assignment = "auto"        # or "pinned": every model names the GPU it runs on

    [[models]]
    model = "Qwen2.5-3B"       # anything --model takes
    ctx_size = 8192            # its context (serve --context overrides it)
    gpu_id = "uuid:GPU-…"      # pinned only: a stable id from `mesh-llm gpus`
    mmproj = "mmproj.gguf"     # a vision model's projector: a path, org/repo/file.gguf or a
                               # file in the model's hub repo (catalog models know theirs)
    draft = "Qwen2.5-0.5B"     # a smaller model of its family to draft with (speculative
                               # decoding): anything --model takes

    [[plugin]]                 # a program run beside the node (cli/plugins.py)
    name = "notes"
    command = "/usr/local/bin/notes-bot"
    args = ["--verbose"]
    env = { NOTES_DIR = "/srv/notes" }
    enabled = true

Precedence: `--model`/`--gguf` on the command line (and `--standby`) ignore the configured
models (and their pins), not its plugins; `--context` overrides every `ctx_size`. A pinned
configuration fails closed: a `gpu_id` that is missing, not a stable id (`index:0`, `CUDA0`),
matched by no device here or by more than one stops `serve` before anything starts. A node
runs a worker on every GPU; a pinned model runs on its GPU's worker only, and a GPU no model
names serves the mesh.
What the file says becomes the same settings the services read (each worker's `models`,
`model_options`, `device` and `pin_to_device`)."""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from meshllm.core.proto.mesh.v1 import common_pb2 as pb

PINNABLE = ("uuid:", "pci:")


class ConfigError(Exception):
    """One line: the file, and what is wrong in it."""


class GpuConfig(BaseModel):
    model_config = {"extra": "forbid"}
    assignment: Literal["auto", "pinned"] = "auto"
    parallel: int | None = Field(None, ge=1)


class ModelConfig(BaseModel):
    model_config = {"extra": "forbid"}
    model: str = Field(min_length=1)
    ctx_size: int | None = Field(None, ge=256)
    gpu_id: str = ""
    mmproj: str = ""
    draft: str = ""
    parallel: int | None = Field(None, ge=1)


class PluginConfig(BaseModel):
    """A program `serve` runs beside the node for as long as it runs (cli/plugins.py)."""

    model_config = {"extra": "forbid"}
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    enabled: bool = True
    command: str = Field(min_length=1)  # an executable: a path, or a name on PATH
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)


class MeshConfig(BaseModel):
    model_config = {"extra": "forbid"}
    version: Literal[1]
    gpu: GpuConfig = Field(default_factory=GpuConfig)
    models: list[ModelConfig] = Field(default_factory=list)
    plugin: list[PluginConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _plugin_names_are_unique(self) -> MeshConfig:
        names = [p.name for p in self.plugin]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"plugin {twice[0]!r} is listed twice: give each its own name")
        return self

    @model_validator(mode="after")
    def _pins_match_the_assignment(self) -> MeshConfig:
        for m in self.models:
            if self.gpu.assignment == "pinned" and not m.gpu_id:
                raise ValueError(f"model {m.model!r} has no gpu_id, and [gpu] assignment is pinned")
            if self.gpu.assignment == "auto" and m.gpu_id:
                raise ValueError(
                    f"model {m.model!r} names gpu_id {m.gpu_id!r} but [gpu] assignment is "
                    'auto: set assignment = "pinned" or drop the gpu_id'
                )
        return self


def load(path: Path) -> MeshConfig | None:
    """The configuration in `path`; None when there is no such file."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror})") from exc
    try:
        data = tomllib.loads(raw.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    try:
        return MeshConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the file"
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "literal_error" and first["loc"] == ("version",):
            message = "version must be 1"
        elif first["type"] == "missing" and first["loc"] == ("version",):
            message = "version = 1 is missing"
        raise ConfigError(f"{path}: {where}: {message}") from exc


@dataclass(frozen=True)
class StartupModels:
    """What `serve` starts with once the command line and the file are weighed."""

    models: list[str]
    contexts: dict[str, int]  # model value → context, where one was configured
    pins: dict[str, list[str]]  # model value → the devices it is pinned to (UUID or index)
    projectors: dict[str, str]  # model value → its mmproj, where one was configured
    source: str  # "command line", the config file's path, or "" when there are none
    notes: list[str]  # what was ignored, said once at start
    drafts: dict[str, str] = field(default_factory=dict)  # model value → its draft model


def startup_models(
    flags: Sequence[str],
    context_flag: int,
    config: MeshConfig | None,
    config_path: Path,
    devices: Callable[[], Sequence[pb.Device]],
) -> StartupModels:
    """The precedence rules, as a function of the flags, the file and this machine's
    devices (`devices`, asked only for pinned ids)."""
    notes = []
    if flags:
        if config is not None and config.models:
            notes.append(f"--model/--gguf given: the models in {config_path} are not started")
        return StartupModels(list(flags), {}, {}, {}, "command line", notes)
    if config is None or not config.models:
        return StartupModels([], {}, {}, {}, "", notes)
    contexts = {m.model: m.ctx_size for m in config.models if m.ctx_size and not context_flag}
    projectors = {m.model: m.mmproj for m in config.models if m.mmproj}
    drafts = {m.model: m.draft for m in config.models if m.draft}
    pins = {}
    if config.gpu.assignment == "pinned":
        pins = pinned_devices(config.models, devices(), config_path)
    models = list(dict.fromkeys(m.model for m in config.models))
    return StartupModels(models, contexts, pins, projectors, str(config_path), notes, drafts)


def pinned_devices(
    models: Sequence[ModelConfig], devices: Sequence[pb.Device], path: Path
) -> dict[str, list[str]]:
    """The devices each pinned model names (as a worker's device: its UUID, else index), or
    ConfigError saying why not — before anything starts."""
    chosen: dict[str, list[str]] = {}
    for m in models:
        if not m.gpu_id.lower().startswith(PINNABLE):
            raise ConfigError(
                f"{path}: model {m.model!r}: gpu_id {m.gpu_id!r} is not a stable id; use a "
                "uuid:… or pci:… id that `mesh-llm gpus` marks pinnable"
            )
        matches = [d for d in devices if m.gpu_id.lower() in (i.lower() for i in stable_ids(d))]
        if not matches:
            raise ConfigError(
                f"{path}: model {m.model!r}: no device here has gpu_id {m.gpu_id!r} (a GPU "
                "removed or moved?); `mesh-llm gpus` lists this machine's"
            )
        if len(matches) > 1:
            raise ConfigError(f"{path}: model {m.model!r}: gpu_id {m.gpu_id!r} is ambiguous")
        device = matches[0].uuid or str(matches[0].index)
        if device not in chosen.setdefault(m.model, []):  # listed twice: a replica on each
            chosen[m.model].append(device)
    return chosen


def stable_ids(device: pb.Device) -> list[str]:
    """The ids a config may pin a device by: its UUID and its PCI address (NVML's 8-digit
    domain written as the usual 4, as lspci does)."""
    from meshllm.core.devices import pci_id

    ids = []
    if device.uuid:
        ids.append(f"uuid:{device.uuid}")
    if device.pci_bus_id:
        ids.append(pci_id(device.pci_bus_id))
    return ids


def enabled_plugins(config: MeshConfig | None) -> list[PluginConfig]:
    return [p for p in config.plugin if p.enabled] if config is not None else []
