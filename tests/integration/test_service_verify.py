"""The unit `mesh-llm service install` writes, as systemd itself reads it: `systemd-analyze
verify` loads it in a user manager of its own (no running systemd needed), checks every key
and that ExecStart's program exists."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import cannot_run_here

from meshllm.cli import service_unit as su

pytestmark = pytest.mark.integration

MESH_LLM = Path(sys.executable).parent / "mesh-llm"  # the virtual environment's script


@pytest.fixture
def analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        cannot_run_here("systemd-analyze not found (Debian package systemd)")
    assert found is not None
    return found


def verify(analyze: str, unit: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    runtime = tmp_path / "runtime"  # a user manager needs XDG_RUNTIME_DIR, even a test one
    runtime.mkdir(mode=0o700, exist_ok=True)
    return subprocess.run(
        [analyze, "--user", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(runtime)},
        check=False,
    )


def test_installed_unit_passes_systemd_analyze_verify(analyze: str, tmp_path: Path) -> None:
    assert MESH_LLM.is_file(), f"{MESH_LLM} missing: install the package (pip install -e .)"
    home = tmp_path / "home"
    home.mkdir()
    flags = ["--model", "smollm2", "--node", "50% box", "--state-dir", str(home / "node")]
    install = [str(MESH_LLM), "service", "install", "--platform", "linux", "--home", str(home)]
    subprocess.run(
        [*install, "--", *flags],
        check=True,
        capture_output=True,
        timeout=60,
    )
    unit = su.service_paths("linux", home).service_file
    assert f"ExecStart={MESH_LLM} serve " in unit.read_text()  # the running script, found
    result = verify(analyze, unit, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", f"systemd warns about the unit: {result.stderr}"


def test_verify_rejects_a_unit_whose_program_is_missing(analyze: str, tmp_path: Path) -> None:
    """The check above can fail: the same verify refuses a unit that cannot start."""
    unit = tmp_path / su.UNIT_NAME
    unit.write_text(su.systemd_unit([str(tmp_path / "gone" / "mesh-llm"), "serve"], Path("/x"), {}))
    result = verify(analyze, unit, tmp_path)
    assert result.returncode != 0
    assert "gone/mesh-llm" in result.stderr
