"""An installed mesh-llm carries the files it reads at run time besides its code: the
calibration text (the MoE quality gate), the console's page, and the CUDA bandwidth probe's
source (`mesh-llm gpu benchmark` builds it on the machine it measures)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_carries_the_files_read_at_run_time(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True,
        timeout=300,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("mesh_llm-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "meshllm/worker/gpu_bandwidth.cu" in names
    assert "meshllm/registry/calibration.txt" in names
    for page in ("index.html", "console.js", "console.css"):  # the console, no CDN
        assert f"meshllm/gateway/console/static/{page}" in names
