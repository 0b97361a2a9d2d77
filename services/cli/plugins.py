"""Plugins: programs config.toml's `[[plugin]]` entries name, run by `serve` beside the node
for as long as it runs — a bot, an indexer, a bridge to another system — each pointed at the
node's API through its environment:

    MESH_LLM_API          http://127.0.0.1:<port>/v1, the node's OpenAI-compatible API
    MESH_LLM_API_KEY      a key of that API, when it wants one
    MESH_LLM_CONSOLE      http://127.0.0.1:<port>, the console and its /api, when it runs
    MESH_LLM_PLUGIN       the plugin's name
    MESH_LLM_PLUGIN_DIR   a directory of its own, kept between runs

plus its own `env`. Its output goes to `logs/plugin-<name>.log`. One that exits is started
again after a growing delay, like the services; one that keeps exiting is left stopped with
a warning, and the node goes on serving."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .config_file import PluginConfig
from .serve_options import ServeError
from .stack import Service


def command_problem(plugin: PluginConfig) -> str:
    """Why the plugin's command cannot run; "" when it can (checked before anything starts)."""
    if shutil.which(plugin.command) is not None:
        return ""
    return (
        f"plugin {plugin.name}: command {plugin.command!r} is not an executable file or a "
        "program on PATH; fix it in config.toml or set enabled = false"
    )


def plugin_service(
    plugin: PluginConfig,
    state_dir: Path,
    api_url: str,
    api_key: str,
    console_url: str,
    echo: bool = False,
) -> Service:
    executable = shutil.which(plugin.command)
    if executable is None:
        raise ServeError(command_problem(plugin))
    home = state_dir / "plugins" / plugin.name
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        **plugin.env,
        "MESH_LLM_API": api_url,
        "MESH_LLM_PLUGIN": plugin.name,
        "MESH_LLM_PLUGIN_DIR": str(home),
    }
    if api_key:
        env["MESH_LLM_API_KEY"] = api_key
    if console_url:
        env["MESH_LLM_CONSOLE"] = console_url
    return Service(
        name=f"plugin {plugin.name}",
        argv=[executable, *plugin.args],
        env=env,
        ready_url="",
        log_path=state_dir / "logs" / f"plugin-{plugin.name}.log",
        echo=echo,
        stop_grace_s=10.0,
        essential=False,
    )
