"""Log records are single bounded lines, whatever input they quote."""

from __future__ import annotations

import io
import json
import logging

import pytest

from meshllm.core.errors import excerpt
from meshllm.core.logging import MAX_MESSAGE_CHARS, configure_logging, one_line


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("a\nFAKE 2026 INFO gateway: forged", "a\\nFAKE 2026 INFO gateway: forged"),
        ("cr\rlf", "cr\\rlf"),
        ("esc\x1b[31m", "esc\\x1b[31m"),
        ("sep\u2028x", "sep\\u2028x"),
    ],
)
def test_one_line_escapes_control_characters(text: str, expected: str) -> None:
    assert one_line(text) == expected


def test_one_line_cuts_long_messages() -> None:
    line = one_line("x" * 1_000_000)
    assert len(line) < MAX_MESSAGE_CHARS + 50 and line.endswith("(995904 more characters)")


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_a_logged_model_name_cannot_forge_or_flood_lines(
    fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    configure_logging("gateway", "INFO", fmt)
    try:
        logging.getLogger("t").info("model %s", "m\nERROR forged line" + "y" * 200_000)
    finally:
        logging.getLogger().handlers.clear()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and len(lines[0]) < MAX_MESSAGE_CHARS + 300
    if fmt == "json":
        assert json.loads(lines[0])["msg"].startswith("model m\\nERROR")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("tiny", "tiny"), ("a\nb", "a\\nb"), ("x" * 100, "x" * 80 + "… (100 characters)")],
)
def test_excerpt(value: str, expected: str) -> None:
    assert excerpt(value) == expected
