"""The committed gRPC stubs must match proto/: regenerate them and compare."""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_generated_stubs_are_up_to_date(tmp_path: Path) -> None:
    out = tmp_path / "proto"
    subprocess.run(
        [str(REPO / "scripts" / "gen-proto.sh"), str(out)],
        check=True,
        env={**os.environ, "PYTHON": sys.executable},
        cwd=REPO,
    )
    committed = REPO / "services" / "core" / "proto" / "mesh" / "v1"
    fresh = out / "mesh" / "v1"
    names = sorted(p.name for p in fresh.iterdir() if p.is_file())
    assert names == sorted(p.name for p in committed.iterdir() if p.is_file())
    _, mismatch, errors = filecmp.cmpfiles(fresh, committed, names, shallow=False)
    assert not mismatch and not errors, f"stale stubs {mismatch}: run `make proto`"
