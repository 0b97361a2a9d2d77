from __future__ import annotations

from pathlib import Path

import pytest

from meshllm.core.errors import InvalidRequest
from meshllm.gateway.guard import ApiPolicy, exposure_problem, presented_key, read_keys

POLICY = ApiPolicy.create(["k-one", "k-two"], ["https://app.example.com"])


@pytest.mark.parametrize(
    ("host", "has_keys", "open_ok", "refused"),
    [
        ("127.0.0.1", False, False, False),
        ("localhost", False, False, False),
        ("0.0.0.0", False, False, True),
        ("10.0.0.5", False, False, True),
        ("0.0.0.0", True, False, False),
        ("0.0.0.0", False, True, False),
    ],
)
def test_an_api_beyond_loopback_needs_keys_or_a_decision(
    host: str, has_keys: bool, open_ok: bool, refused: bool
) -> None:
    problem = exposure_problem(host, has_keys, open_ok)
    assert (problem is not None) is refused
    if refused:
        assert "--api-key" in problem and "--no-api-key" in problem  # type: ignore[operator]


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/v1/chat/completions", {"authorization": "Bearer k-one"}, None),
        ("/v1/models", {"authorization": "bearer k-two"}, None),
        ("/v1/messages", {"x-api-key": "k-two"}, None),
        ("/v1/models", {}, 401),
        ("/v1/models", {"authorization": "Bearer k-three"}, 401),
        ("/v1/models", {"authorization": "Basic k-one"}, 401),
        ("/v1/models", {"authorization": "Bearer "}, 401),
        ("/metrics", {}, 401),
        ("/readyz", {}, None),
        ("/healthz", {}, None),
    ],
)
def test_keys(path: str, headers: dict[str, str], status: int | None) -> None:
    problem = POLICY.key_problem(path, headers)
    assert (problem.http_status if problem else None) == status


def test_without_keys_everything_is_open() -> None:
    assert ApiPolicy.create().key_problem("/v1/models", {}) is None


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        ("https://app.example.com", "gw:9337", True),
        ("http://localhost:9337", "localhost:9337", True),  # the gateway's own page
        ("http://localhost:3131", "localhost:3131", True),
        ("https://evil.example", "localhost:9337", False),
        ("http://localhost:3131", "localhost:9337", False),  # another port is another origin
        ("null", "localhost:9337", False),
    ],
)
def test_origins(origin: str, host: str, allowed: bool) -> None:
    assert POLICY.origin_allowed(origin, host) is allowed


def test_presented_key_prefers_bearer() -> None:
    assert presented_key({"authorization": "Bearer a", "x-api-key": "b"}) == "a"
    assert presented_key({"x-api-key": " b "}) == "b"


def test_keys_file(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# one per line\nalpha\n\n  beta  # the CI's\n")
    assert read_keys(["gamma", ""], str(keys)) == ("gamma", "alpha", "beta")
    with pytest.raises(InvalidRequest, match="cannot read the API keys file"):
        read_keys([], str(tmp_path / "missing"))
