from __future__ import annotations

import json
import plistlib
import stat
from pathlib import Path

import pytest

from meshllm.cli import service_unit as su
from meshllm.cli.main import main

HOME = Path("/home/ada")
VENV_MESH_LLM = "/home/ada/.venv/bin/mesh-llm"


def unit_lines(command: list[str], environment: dict[str, str] | None = None) -> list[str]:
    paths = su.service_paths("linux", HOME)
    return su.systemd_unit(command, paths.env_file, environment or {}).splitlines()


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ([VENV_MESH_LLM, "serve"], f"ExecStart={VENV_MESH_LLM} serve"),
        (
            [VENV_MESH_LLM, "serve", "--model", "smollm2", "--port", "9337"],
            f"ExecStart={VENV_MESH_LLM} serve --model smollm2 --port 9337",
        ),
        (
            ["/opt/My Apps/mesh-llm", "serve", "--gguf", "/m/a b.gguf"],
            'ExecStart="/opt/My Apps/mesh-llm" serve --gguf "/m/a b.gguf"',
        ),
        (  # specifiers and variables are doubled, quotes and backslashes escaped
            [VENV_MESH_LLM, "serve", "--node", "50%$HOME", "--api-key", 'k"\\y'],
            f'ExecStart={VENV_MESH_LLM} serve --node "50%%$$HOME" --api-key "k\\"\\\\y"',
        ),
    ],
)
def test_exec_start(command: list[str], expected: str) -> None:
    assert expected in unit_lines(command)


def test_unit_command_reads_exec_start_back() -> None:
    text = "\n".join(unit_lines([VENV_MESH_LLM, "serve", "--node", "50%$HOME"]))
    assert su.unit_command(text) == f'{VENV_MESH_LLM} serve --node "50%$HOME"'


@pytest.mark.parametrize(
    "line",
    [
        "EnvironmentFile=-/home/ada/.config/mesh-llm/service.env",
        "Restart=on-failure",
        f"RestartSec={su.RESTART_DELAY_S}",
        "KillMode=mixed",
        "KillSignal=SIGTERM",
        f"TimeoutStopSec={su.STOP_TIMEOUT_S}",
        "WantedBy=default.target",
        'Environment="PATH=/usr/local/bin:/usr/bin:/with space"',
    ],
)
def test_unit_has(line: str) -> None:
    environment = {"PATH": "/usr/local/bin:/usr/bin:/with space"}
    assert line in unit_lines([VENV_MESH_LLM, "serve"], environment)


def test_unit_stops_later_than_serve_stops_a_child() -> None:
    assert su.STOP_TIMEOUT_S > 30


def test_environment_comes_before_the_env_file_which_overrides_it() -> None:
    lines = unit_lines([VENV_MESH_LLM, "serve"], {"PATH": "/usr/bin"})
    assert lines.index("Environment=PATH=/usr/bin") < lines.index(
        "EnvironmentFile=-/home/ada/.config/mesh-llm/service.env"
    )


def test_unit_refuses_a_line_break() -> None:
    with pytest.raises(su.ServiceFileError, match="line break"):
        unit_lines([VENV_MESH_LLM, "serve", "--node", "a\nb"])


def test_plist_parses_and_has_the_agent_keys() -> None:
    paths = su.service_paths("macos", Path("/Users/ada"))
    command = ["/Users/ada/.local/bin/mesh-llm", "serve", "--model", "smollm2"]
    agent = plistlib.loads(su.launchd_plist(command, {"PATH": "/usr/bin", "MESH_X": "1"}, paths))
    assert agent["Label"] == su.LAUNCHD_LABEL == "com.mesh-llm.mesh-llm"
    assert agent["ProgramArguments"] == command
    assert agent["RunAtLoad"] is True
    assert agent["KeepAlive"] == {"SuccessfulExit": False}
    assert agent["StandardOutPath"] == "/Users/ada/Library/Logs/mesh-llm/stdout.log"
    assert agent["StandardErrorPath"] == "/Users/ada/Library/Logs/mesh-llm/stderr.log"
    assert agent["EnvironmentVariables"] == {"PATH": "/usr/bin", "MESH_X": "1"}
    assert agent["ExitTimeOut"] == su.STOP_TIMEOUT_S
    assert su.plist_command(su.launchd_plist(command, {}, paths)) == (
        "/Users/ada/.local/bin/mesh-llm serve --model smollm2"
    )


@pytest.mark.parametrize(
    ("platform", "xdg", "service_file", "env_file"),
    [
        (
            "linux",
            "",
            "/home/ada/.config/systemd/user/mesh-llm.service",
            "/home/ada/.config/mesh-llm/service.env",
        ),
        (
            "linux",
            "/xdg",
            "/xdg/systemd/user/mesh-llm.service",
            "/xdg/mesh-llm/service.env",
        ),
        (
            "linux",
            "relative/ignored",
            "/home/ada/.config/systemd/user/mesh-llm.service",
            "/home/ada/.config/mesh-llm/service.env",
        ),
        (
            "macos",
            "",
            "/home/ada/Library/LaunchAgents/com.mesh-llm.mesh-llm.plist",
            "/home/ada/.config/mesh-llm/service.env",
        ),
    ],
)
def test_paths(platform: str, xdg: str, service_file: str, env_file: str) -> None:
    paths = su.service_paths(platform, HOME, xdg)
    assert (str(paths.service_file), str(paths.env_file)) == (service_file, env_file)


@pytest.mark.parametrize(
    ("sys_platform", "expected"), [("linux", "linux"), ("darwin", "macos"), ("win32", "")]
)
def test_platform_of(sys_platform: str, expected: str) -> None:
    assert su.platform_of(sys_platform) == expected


def test_command_is_the_mesh_llm_script_when_started_as_one(tmp_path: Path) -> None:
    script = tmp_path / "bin" / "mesh-llm"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    link = tmp_path / "mesh-llm"
    link.symlink_to(script)  # kept as given: a symlink survives its target's upgrade
    assert su.mesh_llm_command(str(link), "/usr/bin/python3") == [str(link)]
    assert su.mesh_llm_command(str(script), "/usr/bin/python3") == [str(script)]


@pytest.mark.parametrize("argv0", ["/usr/lib/python3/pytest", "", "/nowhere/mesh-llm"])
def test_command_falls_back_to_python_m(argv0: str) -> None:
    assert su.mesh_llm_command(argv0, "/v/bin/python") == ["/v/bin/python", "-m", "meshllm.cli"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (su.ENV_FILE_TEMPLATE, {}),
        ("A=1\n\n# c\nexport B = two words\n", {"A": "1", "B": "two words"}),
        ("TOKEN=\"x=y\"\nQ='z'\nEMPTY=\n", {"TOKEN": "x=y", "Q": "z", "EMPTY": ""}),
    ],
)
def test_parse_env_file(text: str, expected: dict[str, str]) -> None:
    assert su.parse_env_file(text) == expected


@pytest.mark.parametrize("text", ["just words\n", "1BAD=x\n", "=x\n"])
def test_parse_env_file_names_the_bad_line(text: str) -> None:
    with pytest.raises(su.ServiceFileError, match=r"service.env:1: expected KEY=value"):
        su.parse_env_file(f"{text}")


# The command, as a user runs it, in a temporary home.


def cli(home: Path, action: str, *args: str) -> int:
    return main(["service", action, "--home", str(home), *args])


def linux_paths(home: Path) -> su.ServicePaths:
    return su.service_paths("linux", home)


def test_install_writes_the_unit_and_a_private_env_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli(tmp_path, "install", "--platform", "linux", "--", "--model", "smollm2")
    out = capsys.readouterr().out
    paths = linux_paths(tmp_path)
    assert code == 0
    unit = paths.service_file.read_text()
    assert "serve --model smollm2" in su.unit_command(unit)
    assert f"EnvironmentFile=-{paths.env_file}" in unit.splitlines()
    assert stat.S_IMODE(paths.env_file.stat().st_mode) == 0o600
    assert paths.env_file.read_text() == su.ENV_FILE_TEMPLATE
    for hint in (
        "systemctl --user daemon-reload",
        "systemctl --user enable --now mesh-llm.service",
        "loginctl enable-linger $USER",
    ):
        assert hint in out


def test_install_keeps_an_existing_env_file(tmp_path: Path) -> None:
    paths = linux_paths(tmp_path)
    paths.env_file.parent.mkdir(parents=True)
    paths.env_file.write_text("MESH_LOG_LEVEL=debug\n")
    assert cli(tmp_path, "install", "--platform", "linux") == 0
    assert paths.env_file.read_text() == "MESH_LOG_LEVEL=debug\n"


def test_install_on_macos_copies_the_env_file_into_the_agent(tmp_path: Path) -> None:
    paths = su.service_paths("macos", tmp_path)
    paths.env_file.parent.mkdir(parents=True)
    paths.env_file.write_text("MESH_LOG_LEVEL=debug\n")
    assert cli(tmp_path, "install", "--platform", "macos", "--", "--model", "smollm2") == 0
    agent = plistlib.loads(paths.service_file.read_bytes())
    assert agent["EnvironmentVariables"]["MESH_LOG_LEVEL"] == "debug"
    assert "PATH" in agent["EnvironmentVariables"]
    assert agent["ProgramArguments"][-3:] == ["serve", "--model", "smollm2"]
    assert paths.log_dir.is_dir()


def test_dry_run_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(tmp_path, "install", "--platform", "linux", "--dry-run") == 0
    assert "ExecStart=" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []
    assert cli(tmp_path, "install", "--platform", "macos", "--dry-run", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert plistlib.loads(report["content"].encode())["Label"] == su.LAUNCHD_LABEL
    assert list(tmp_path.iterdir()) == []


def test_uninstall_keeps_the_env_file_and_purge_removes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = linux_paths(tmp_path)
    assert cli(tmp_path, "install", "--platform", "linux") == 0
    paths.enable_link.parent.mkdir()
    paths.enable_link.symlink_to(paths.service_file)  # as `systemctl --user enable` does
    capsys.readouterr()
    assert cli(tmp_path, "uninstall", "--platform", "linux") == 0
    out = capsys.readouterr().out
    assert f"removed {paths.service_file}" in out
    assert f"removed {paths.enable_link}" in out
    assert not paths.service_file.exists() and not paths.enable_link.is_symlink()
    assert paths.env_file.exists()
    assert cli(tmp_path, "uninstall", "--platform", "linux", "--purge", "--json") == 0
    assert json.loads(capsys.readouterr().out)["removed"] == [str(paths.env_file)]
    assert not paths.env_file.parent.exists()


def test_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(tmp_path, "status", "--platform", "linux", "--json") == 0
    assert json.loads(capsys.readouterr().out)["installed"] is False
    assert cli(tmp_path, "install", "--platform", "linux", "--", "--port", "9400") == 0
    capsys.readouterr()
    assert cli(tmp_path, "status", "--platform", "linux", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["installed"] is True
    assert report["service_file"] == str(linux_paths(tmp_path).service_file)
    assert report["env_file_exists"] is True
    assert report["command"].endswith("serve --port 9400")
    assert report["state"] is None  # --home: not the unit this machine's systemd reads
    assert cli(tmp_path, "status", "--platform", "linux") == 0
    assert "installed: yes" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["install", "--platform", "windows"], "--platform 'windows': choose linux or macos"),
        (["status", "--platform", "bsd"], "--platform 'bsd': choose linux or macos"),
        (["install", "--", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        (["install", "--", "--gguf", "model.gguf"], "--gguf model.gguf: give an absolute path"),
        (["install", "--", "--help"], "--help: not a flag"),
        (["install", "--now", "--platform", "linux"], "--now starts the service of this"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert cli(tmp_path, *args) == 1
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("mesh-llm: error: ")
    assert message in captured.err
    assert list(tmp_path.iterdir()) == []


def test_missing_home_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["service", "status", "--home", str(tmp_path / "absent")]) == 1
    assert capsys.readouterr().err.startswith("mesh-llm: error: --home ")


def test_service_alone_prints_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["service"]) == 0
    assert "install" in capsys.readouterr().out
