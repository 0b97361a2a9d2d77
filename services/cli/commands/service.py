"""`mesh-llm service install|uninstall|status`: run this machine's node as a user service, a
`systemd --user` unit on Linux or a launchd agent on macOS (the files: cli/service_unit.py)."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .common import Subcommands, fail, help_of

if TYPE_CHECKING:
    from ..service_unit import ServicePaths

SERVICE_HELP = """\
Run `mesh-llm serve` as a service of your user, started at boot (Linux, with lingering
on) or at login (macOS) and restarted when it fails:

  Linux   ~/.config/systemd/user/mesh-llm.service             (systemd --user)
  macOS   ~/Library/LaunchAgents/com.mesh-llm.mesh-llm.plist  (launchd)

Both read ~/.config/mesh-llm/service.env: KEY=value lines (MESH_* settings, PATH),
readable by you only. Nothing is started unless you ask (--now). Give serve a
--state-dir, so that a restarted node keeps its credentials and its mesh.

  mesh-llm service install -- --join TOKEN --model smollm2 --state-dir ~/.mesh-llm/node
  mesh-llm service install --dry-run       show the unit without writing it
  mesh-llm service status [--json]
  mesh-llm service uninstall [--purge]
"""

MANAGER_TIMEOUT_S = 180  # a restart waits for the old node to stop (STOP_TIMEOUT_S)
PATH_FLAGS = ("gguf", "api_keys_file", "state_dir")  # serve flags naming files


def add_parser(commands: Subcommands) -> None:
    service = commands.add_parser(
        "service",
        help="run this node as a user service (systemd --user on Linux, launchd on macOS)",
        description=SERVICE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = service.add_subparsers(dest="service_command", metavar="ACTION")
    install = actions.add_parser(
        "install",
        help="write the unit (or agent) that runs `mesh-llm serve`",
        description="Write the systemd user unit (Linux) or launchd agent (macOS) that runs "
        "`mesh-llm serve` with the flags given after `--` (none: serve's defaults), and "
        "create the environment file if it is missing. Prints the commands that start it; "
        "--now runs them. Installing again replaces the unit and keeps the environment file.",
    )
    add_target_flags(install)
    install.add_argument(
        "--dry-run", action="store_true", help="print the file it would write; write nothing"
    )
    install.add_argument(
        "--now",
        action="store_true",
        help="also start it now and at every boot/login (runs systemctl or launchctl)",
    )
    install.add_argument(
        "serve_flags",
        nargs="*",
        metavar="SERVE_FLAG",
        help="after `--`: the flags `mesh-llm serve` runs with (paths must be absolute)",
    )
    uninstall = actions.add_parser(
        "uninstall",
        help="remove the unit (or agent) that install wrote",
        description="Remove the unit or agent written by `mesh-llm service install`. The "
        "environment file stays unless --purge. A running node keeps running unless --now.",
    )
    add_target_flags(uninstall)
    uninstall.add_argument(
        "--purge",
        action="store_true",
        help="also remove the environment file (and, on macOS, the service's logs)",
    )
    uninstall.add_argument(
        "--now", action="store_true", help="stop and disable it first (runs systemctl or launchctl)"
    )
    status = actions.add_parser(
        "status",
        help="whether the service is installed, where, and (if it can tell) whether it runs",
        description="Whether the service is installed, its files and command, and whether it "
        "runs (asked of systemctl or launchctl when the platform is this machine's).",
    )
    add_target_flags(status)
    service.set_defaults(run=lambda args: help_of(service))
    install.set_defaults(run=run_install)
    uninstall.set_defaults(run=run_uninstall)
    status.set_defaults(run=run_status)


def add_target_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--platform",
        default="",
        metavar="linux|macos",
        help="which service manager's files (default: this machine's)",
    )
    parser.add_argument(
        "--home",
        default="",
        metavar="DIR",
        help="the home directory the files go under (default: yours)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")


def run_install(args: argparse.Namespace) -> int:
    from meshllm.core.pki import write_private

    from .. import service_unit as su

    try:
        paths, here = target(args)
        if args.now and not here:
            return fail("--now starts the service of this machine: not with --platform or --home")
        problem = serve_flags_problem(args.serve_flags)
        if problem:
            return fail(problem)
        command = su.serve_command(
            su.mesh_llm_command(sys.argv[0], sys.executable), args.serve_flags
        )
        env_exists = paths.env_file.is_file()
        env_text = paths.env_file.read_text() if env_exists else su.ENV_FILE_TEMPLATE
        environment = {"PATH": search_path()}
        if paths.platform == "macos":
            content = su.launchd_plist(
                command, environment | su.parse_env_file(env_text, str(paths.env_file)), paths
            )
        else:
            content = su.systemd_unit(command, paths.env_file, environment).encode()
    except su.ServiceFileError as exc:
        return fail(str(exc))
    except (OSError, UnicodeDecodeError) as exc:
        return fail(f"cannot read {paths.env_file}: {exc}")
    next_steps = start_commands(paths)
    report = {
        "platform": paths.platform,
        "service_file": str(paths.service_file),
        "env_file": str(paths.env_file),
        "command": command,
        "dry_run": args.dry_run,
        "next": next_steps,
    }
    if args.dry_run:
        if args.json:
            print(json.dumps({**report, "content": content.decode()}, indent=2))
        else:
            print(f"# would write {paths.service_file}")
            print(content.decode(), end="")
        return 0
    updated = paths.service_file.exists()
    try:
        if not env_exists:
            write_private(paths.env_file, su.ENV_FILE_TEMPLATE.encode())
        write_private(paths.service_file, content)  # 0600: its flags may hold a token
        if paths.platform == "macos":
            paths.log_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return fail(f"cannot write the service files: {exc}")
    started = False
    if args.now:
        error = start_service(paths)
        if error:
            return fail(f"{error} ({paths.service_file} is written)")
        started = True
    report |= {"updated": updated, "env_file_created": not env_exists, "started": started}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{'updated' if updated else 'wrote'} {paths.service_file}")
    env_note = "new, mode 0600: KEY=value lines" if not env_exists else "kept"
    print(f"environment: {paths.env_file} ({env_note})")
    print(f"runs: {shlex.join(command)}")
    print_next_steps(paths, updated, started, args.serve_flags)
    return 0


def run_uninstall(args: argparse.Namespace) -> int:
    try:
        paths, here = target(args)
    except ValueError as exc:
        return fail(str(exc))
    if args.now and not here:
        return fail("--now stops the service of this machine: not with --platform or --home")
    installed = paths.service_file.exists()
    stopped = False
    if args.now and installed:
        error = stop_service(paths)
        if error:
            return fail(f"{error} (nothing removed)")
        stopped = True
    doomed = [paths.service_file]
    if paths.platform == "linux" and paths.enable_link.is_symlink():
        doomed.append(paths.enable_link)
    if args.purge:
        doomed.append(paths.env_file)
        if paths.platform == "macos":
            doomed.append(paths.log_dir)
    removed: list[str] = []
    for path in doomed:
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
            else:
                continue
        except OSError as exc:
            return fail(f"cannot remove {path}: {exc}")
        removed.append(str(path))
    config_dir = paths.env_file.parent
    if args.purge and config_dir.is_dir() and not any(config_dir.iterdir()):
        config_dir.rmdir()  # made by install; empty now
    if stopped and paths.platform == "linux":
        manager(["systemctl", "--user", "daemon-reload"])
    leftovers = [paths.env_file, paths.log_dir] if paths.platform == "macos" else [paths.env_file]
    kept = [str(path) for path in leftovers if path.exists()]
    if args.json:
        print(
            json.dumps(
                {"platform": paths.platform, "removed": removed, "kept": kept, "stopped": stopped},
                indent=2,
            )
        )
        return 0
    if not removed:
        print(f"nothing to remove: no service at {paths.service_file}")
    for path_text in removed:
        print(f"removed {path_text}")
    for path_text in kept:
        print(f"kept {path_text} (--purge removes it)")
    if installed and not stopped:
        print("If it runs, stop it:")
        for line in stop_commands(paths):
            print(f"  {line}")
    return 0


def run_status(args: argparse.Namespace) -> int:
    from .. import service_unit as su

    try:
        paths, here = target(args)
    except ValueError as exc:
        return fail(str(exc))
    installed = paths.service_file.is_file()
    command = ""
    if installed:
        try:
            data = paths.service_file.read_bytes()
        except OSError as exc:
            return fail(f"cannot read {paths.service_file}: {exc}")
        if paths.platform == "macos":
            command = su.plist_command(data)
        else:
            command = su.unit_command(data.decode(errors="replace"))
    state, state_error = (None, "")
    if installed and here:
        state, state_error = service_state(paths)
    report = {
        "platform": paths.platform,
        "installed": installed,
        "service_file": str(paths.service_file),
        "env_file": str(paths.env_file),
        "env_file_exists": paths.env_file.is_file(),
        "command": command,
        "state": state,
        "state_error": state_error,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    manager_name = "launchd" if paths.platform == "macos" else "systemd --user"
    if not installed:
        print(
            f"installed: no ({paths.platform}: `mesh-llm service install` writes "
            f"{paths.service_file})"
        )
        return 0
    print(f"installed: yes ({paths.platform}, {manager_name})")
    print(f"file:      {paths.service_file}")
    print(f"runs:      {command or '(unreadable)'}")
    env_note = "" if report["env_file_exists"] else " (missing)"
    print(f"env file:  {paths.env_file}{env_note}")
    if state is not None:
        print(f"state:     {state}")
    elif state_error:
        print(f"state:     unknown ({state_error})")
    return 0


def search_path() -> str:
    """This shell's PATH, for the service to find etcd and llama.cpp as `serve` here does
    (launchd's and systemd's own are shorter); repeated entries dropped."""
    entries = os.environ.get("PATH", os.defpath).split(os.pathsep)
    return os.pathsep.join(dict.fromkeys(entry for entry in entries if entry))


def target(args: argparse.Namespace) -> tuple[ServicePaths, bool]:
    """The service's paths, and whether they are the ones this machine's service manager
    reads (this platform, the real home): only then may --now and status ask it."""
    from ..service_unit import ServiceFileError, platform_of, service_paths

    host = platform_of(sys.platform)
    platform = args.platform or host
    if not platform:
        raise ServiceFileError(
            f"no systemd or launchd on {sys.platform}: pass --platform linux or macos"
        )
    if args.home:
        home = Path(args.home).expanduser().absolute()
        if not home.is_dir():
            raise ServiceFileError(f"--home {args.home}: no such directory")
        paths = service_paths(platform, home)
    else:
        paths = service_paths(platform, Path.home(), os.environ.get("XDG_CONFIG_HOME", ""))
    return paths, platform == host and not args.home


class FlagError(Exception):
    pass


class CheckingParser(argparse.ArgumentParser):
    """The `serve` parser, raising where it would print and exit."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise FlagError(message)

    def print_help(self, file: object = None) -> None:
        raise FlagError("--help: not a flag to run the service with")


def serve_flags_problem(flags: list[str]) -> str:
    """What is wrong with the flags the service's `serve` would run with: caught now, not in
    a restart loop. Paths must be absolute: the service runs in the home directory."""
    from . import serve

    parser = CheckingParser(prog="mesh-llm")
    serve.add_parser(parser.add_subparsers(dest="command", parser_class=CheckingParser))
    try:
        parsed = parser.parse_args(["serve", *flags])
    except FlagError as exc:
        return f"serve flags after `--`: {exc}"
    for name in PATH_FLAGS:
        values = getattr(parsed, name)
        for value in values if isinstance(values, list) else [values]:
            if value and not os.path.isabs(value):
                flag = "--" + name.replace("_", "-")
                return f"{flag} {value}: give an absolute path (the service runs in your home)"
    return ""


def start_commands(paths: ServicePaths) -> list[str]:
    from ..service_unit import LAUNCHD_LABEL, UNIT_NAME

    if paths.platform == "macos":
        return [
            f"launchctl bootout gui/$(id -u)/{LAUNCHD_LABEL} 2>/dev/null; "
            f"launchctl bootstrap gui/$(id -u) {shlex.quote(str(paths.service_file))}"
        ]
    return ["systemctl --user daemon-reload", f"systemctl --user enable --now {UNIT_NAME}"]


def stop_commands(paths: ServicePaths) -> list[str]:
    from ..service_unit import LAUNCHD_LABEL, UNIT_NAME

    if paths.platform == "macos":
        return [f"launchctl bootout gui/$(id -u)/{LAUNCHD_LABEL}"]
    return [f"systemctl --user stop {UNIT_NAME}", "systemctl --user daemon-reload"]


def print_next_steps(paths: ServicePaths, updated: bool, started: bool, flags: list[str]) -> None:
    from ..service_unit import UNIT_NAME

    if started:
        print(
            "started, and starts again at every "
            + ("login" if paths.platform == "macos" else "boot")
        )
    elif paths.platform == "macos":
        print("Start it now and at every login:")
        for line in start_commands(paths):
            print(f"  {line}")
    else:
        print("Start it now and at every boot:")
        for line in start_commands(paths):
            print(f"  {line}")
        if updated:
            print(f"  systemctl --user restart {UNIT_NAME}   (if it was running)")
    if paths.platform == "macos":
        print(f"logs: {paths.stdout_log} and {paths.stderr_log}")
        print("after editing the env file, install again: the agent holds a copy of it")
    else:
        print("Keep it running while you are logged out (and start it at boot):")
        print("  sudo loginctl enable-linger $USER")
        print(f"logs: journalctl --user -u {UNIT_NAME} -f")
    if not any(flag == "--state-dir" or flag.startswith("--state-dir=") for flag in flags):
        print(
            "note: without --state-dir every start makes a new state directory (a node that "
            "founds a mesh founds a new one); add `-- --state-dir DIR` to keep it"
        )


def start_service(paths: ServicePaths) -> str:
    """Enable and (re)start the installed service; '' or what went wrong, in one line."""
    from ..service_unit import LAUNCHD_LABEL, UNIT_NAME

    if paths.platform == "macos":
        domain = f"gui/{os.getuid()}"
        manager(["launchctl", "bootout", f"{domain}/{LAUNCHD_LABEL}"])  # not loaded: fine
        return manager(["launchctl", "bootstrap", domain, str(paths.service_file)])
    for argv in (
        ["systemctl", "--user", "daemon-reload"],
        ["systemctl", "--user", "enable", UNIT_NAME],
        ["systemctl", "--user", "restart", UNIT_NAME],
    ):
        error = manager(argv)
        if error:
            return error
    return ""


def stop_service(paths: ServicePaths) -> str:
    from ..service_unit import LAUNCHD_LABEL, UNIT_NAME

    if paths.platform == "macos":
        return manager(["launchctl", "bootout", f"gui/{os.getuid()}/{LAUNCHD_LABEL}"])
    return manager(["systemctl", "--user", "disable", "--now", UNIT_NAME])


def service_state(paths: ServicePaths) -> tuple[str | None, str]:
    """What the service manager says of the service: (state, '') or (None, why not)."""
    from ..service_unit import LAUNCHD_LABEL, UNIT_NAME

    if paths.platform == "macos":
        argv = ["launchctl", "print", f"gui/{os.getuid()}/{LAUNCHD_LABEL}"]
    else:
        argv = ["systemctl", "--user", "is-active", UNIT_NAME]
    if shutil.which(argv[0]) is None:
        return None, f"{argv[0]} not found"
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"{argv[0]}: {exc}"
    if paths.platform == "macos":
        return ("loaded" if result.returncode == 0 else "not loaded"), ""
    word = result.stdout.strip()
    if word:
        return word, ""
    return None, f"{argv[0]}: {first_line(result.stderr) or f'exit status {result.returncode}'}"


def manager(argv: list[str]) -> str:
    """Run a systemctl or launchctl command; '' or what went wrong, in one line."""
    if shutil.which(argv[0]) is None:
        return f"{argv[0]} not found: run `{shlex.join(argv)}` where the service manager runs"
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=MANAGER_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`{shlex.join(argv)}`: {exc}"
    if result.returncode:
        why = first_line(result.stderr) or f"exit status {result.returncode}"
        return f"`{shlex.join(argv)}` failed: {why}"
    return ""


def first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")
