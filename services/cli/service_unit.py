"""What `mesh-llm service install` writes: a `systemd --user` unit (Linux) or a launchd agent
(macOS) that runs `mesh-llm serve`, the environment file both read, and where each lives.

Pure functions of their arguments: the command (cli/commands/service.py) reads the machine
(home, PATH, the running executable) and writes the files."""

from __future__ import annotations

import os
import plistlib
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

PLATFORMS = ("linux", "macos")
UNIT_NAME = "mesh-llm.service"
LAUNCHD_LABEL = "com.mesh-llm.mesh-llm"
# `serve` stops its children one after another, newest first, each within a 30 s grace:
# the service manager waits this long after SIGTERM before it kills what is left.
STOP_TIMEOUT_S = 120
RESTART_DELAY_S = 5

ENV_FILE_TEMPLATE = """\
# Environment of the mesh-llm service (`mesh-llm service install`): KEY=value lines,
# one a line; '#' starts a comment. Readable by its owner only: it may hold secrets.
# The Linux unit reads it at each start; the macOS agent copies it when installed
# (run `mesh-llm service install` again after editing it there).
#
# MESH_LLAMA_BIN_DIR=/opt/llama.cpp/bin
# MESH_HOME=/srv/mesh-llm
# PATH=/usr/local/bin:/usr/bin:/bin
"""

_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PLAIN_WORD = re.compile(r"[A-Za-z0-9_@+=:,./-]+")


class ServiceFileError(ValueError):
    """Input that cannot go into a unit or plist (a bad env file line, a newline in a path)."""


@dataclass(frozen=True)
class ServicePaths:
    """Where the service's files live for one platform under one home directory."""

    platform: str
    home: Path
    config_home: Path  # $XDG_CONFIG_HOME, else ~/.config

    @property
    def env_file(self) -> Path:
        return self.config_home / "mesh-llm" / "service.env"

    @property
    def service_file(self) -> Path:
        if self.platform == "macos":
            return self.home / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"
        return self.config_home / "systemd" / "user" / UNIT_NAME

    @property
    def enable_link(self) -> Path:
        """The link `systemctl --user enable` makes (Linux); uninstall removes it with the
        unit so that no dangling link is left behind."""
        return self.config_home / "systemd" / "user" / "default.target.wants" / UNIT_NAME

    @property
    def log_dir(self) -> Path:
        """macOS: where launchd writes the agent's output (Linux: the journal)."""
        return self.home / "Library" / "Logs" / "mesh-llm"

    @property
    def stdout_log(self) -> Path:
        return self.log_dir / "stdout.log"

    @property
    def stderr_log(self) -> Path:
        return self.log_dir / "stderr.log"


def service_paths(platform: str, home: Path, xdg_config_home: str = "") -> ServicePaths:
    """`xdg_config_home` is honoured when absolute, as systemd does for its user units."""
    if platform not in PLATFORMS:
        raise ServiceFileError(f"--platform {platform!r}: choose linux or macos")
    config_home = Path(xdg_config_home) if os.path.isabs(xdg_config_home) else home / ".config"
    return ServicePaths(platform, home, config_home)


def platform_of(sys_platform: str) -> str:
    """This machine's platform as `--platform` names it; '' where no service can run."""
    if sys_platform == "darwin":
        return "macos"
    if sys_platform.startswith("linux"):
        return "linux"
    return ""


def mesh_llm_command(argv0: str, python: str) -> list[str]:
    """The command that starts this `mesh-llm`: the executable it was started as when that is
    a `mesh-llm` script, else `python -m meshllm.cli`. Neither path is resolved: a symlink
    (Homebrew's, a virtual environment's python) keeps working when its target moves on an
    upgrade, and a venv's python resolved would leave the venv."""
    script = Path(os.path.abspath(argv0)) if argv0 else None
    if script is not None and script.name == "mesh-llm" and _executable(script):
        return [str(script)]
    return [os.path.abspath(python), "-m", "meshllm.cli"]


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def serve_command(program: list[str], flags: list[str]) -> list[str]:
    return [*program, "serve", *flags]


def parse_env_file(text: str, name: str = "service.env") -> dict[str, str]:
    """KEY=value lines (an `export ` prefix and one pair of quotes around the value are
    accepted, as a shell would); blank lines and '#' comments are skipped."""
    variables: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not _ENV_KEY.fullmatch(key):
            raise ServiceFileError(f"{name}:{number}: expected KEY=value, got {raw.strip()!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        variables[key] = value
    return variables


def systemd_unit(command: list[str], env_file: Path, environment: dict[str, str]) -> str:
    """A `systemd --user` unit running `command`. `environment` (PATH at install time) comes
    first; the env file, read at each start, overrides it. KillMode=mixed sends SIGTERM to
    `serve` alone, which stops its children in order; only what outlives the timeout gets
    SIGKILL, the whole group then."""
    env_lines = [
        f"Environment={_systemd_quote(f'{k}={v}', specifiers_only=True)}"
        for k, v in environment.items()
    ]
    exec_start = " ".join(_systemd_quote(arg) for arg in command)
    lines = [
        "# Written by `mesh-llm service install`; `mesh-llm service uninstall` removes it.",
        f"# Environment: KEY=value lines in {env_file}",
        "[Unit]",
        "Description=Mesh LLM node (mesh-llm serve)",
        "",
        "[Service]",
        "Type=simple",
        *env_lines,
        f"EnvironmentFile=-{_systemd_path(env_file)}",
        f"ExecStart={exec_start}",
        "WorkingDirectory=%h",
        "Restart=on-failure",
        f"RestartSec={RESTART_DELAY_S}",
        "KillMode=mixed",
        "KillSignal=SIGTERM",
        f"TimeoutStopSec={STOP_TIMEOUT_S}",
        "",
        "[Install]",
        "WantedBy=default.target",
        "",
    ]
    return "\n".join(lines)


def _systemd_quote(arg: str, *, specifiers_only: bool = False) -> str:
    """One word of a unit file line: quoted where it holds anything but plain characters,
    '%' doubled (specifiers) and, on ExecStart, '$' doubled (variable expansion)."""
    if "\n" in arg or "\r" in arg:
        raise ServiceFileError(f"{arg!r}: a unit file line cannot hold a line break")
    if not _PLAIN_WORD.fullmatch(arg):
        arg = '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'
    arg = arg.replace("%", "%%")
    return arg if specifiers_only else arg.replace("$", "$$")


def _systemd_path(path: Path) -> str:
    text = str(path)
    if "\n" in text or "\r" in text:
        raise ServiceFileError(f"{text!r}: a unit file line cannot hold a line break")
    return text.replace("%", "%%")


def launchd_plist(command: list[str], environment: dict[str, str], paths: ServicePaths) -> bytes:
    """A launchd agent running `command` at login, restarted when it fails (KeepAlive on an
    unsuccessful exit). ExitTimeOut gives `serve` the time to stop its children; the
    Interactive process type spares it the CPU and I/O throttling launchd applies to
    Background and Standard agents, which would slow the models it serves."""
    agent = {
        "Label": LAUNCHD_LABEL,
        "ProgramArguments": command,
        "EnvironmentVariables": environment,
        "WorkingDirectory": str(paths.home),
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": RESTART_DELAY_S,
        "ExitTimeOut": STOP_TIMEOUT_S,
        "ProcessType": "Interactive",
        "StandardOutPath": str(paths.stdout_log),
        "StandardErrorPath": str(paths.stderr_log),
    }
    return plistlib.dumps(agent)


def unit_command(unit_text: str) -> str:
    """The command an installed unit runs, as its ExecStart line says (unescaped)."""
    for line in unit_text.splitlines():
        if line.startswith("ExecStart="):
            return line.removeprefix("ExecStart=").replace("%%", "%").replace("$$", "$")
    return ""


def plist_command(plist_bytes: bytes) -> str:
    try:
        agent = plistlib.loads(plist_bytes)
    except (plistlib.InvalidFileException, ValueError):
        return ""
    arguments = agent.get("ProgramArguments") if isinstance(agent, dict) else None
    return shlex.join(arguments) if isinstance(arguments, list) else ""
