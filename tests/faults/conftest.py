"""The fault suite: each test breaks something on purpose under load and records what it
cost (requests failed, how, and the time to recover). The figures are printed at the end of
the run, and written as JSON to $MESH_FAULTS_REPORT when set (docs/RELIABILITY.md)."""

from __future__ import annotations

import json
import os

import pytest
from load import Verdict

RESULTS: list[tuple[str, Verdict]] = []


@pytest.fixture
def record():  # type: ignore[no-untyped-def]
    def add(fault: str, verdict: Verdict) -> Verdict:
        RESULTS.append((fault, verdict))
        print(verdict.line(fault))
        return verdict

    return add


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if not RESULTS:
        return
    terminalreporter.section("faults: what each cost")
    for fault, verdict in RESULTS:
        terminalreporter.write_line(verdict.line(fault))
    path = os.environ.get("MESH_FAULTS_REPORT")
    if path:
        with open(path, "w") as out:
            json.dump([{"fault": f, **v.__dict__} for f, v in RESULTS], out, indent=2)
