from __future__ import annotations

import base64
import json

import pytest

from meshllm.core.invite import InvalidToken, InviteToken, decode_token

TOKEN = InviteToken(
    mesh_id="m-1", etcd=["10.0.0.1:2379", "10.0.0.2:2379"], secret="s3", mesh_name="lab"
)


def test_round_trip() -> None:
    text = TOKEN.encode()
    assert text.startswith("mesh1.") and " " not in text
    assert decode_token(text) == TOKEN
    assert decode_token(f"  {text}\n") == TOKEN


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda t: t[:-5], "truncated or damaged"),
        (lambda t: t[: len(t) // 2], "truncated or damaged"),
        (lambda t: t.replace("mesh1.", "mesh2."), "not a Mesh LLM invite token"),
        (lambda t: "hello", "not a Mesh LLM invite token"),
        (lambda t: "", "not a Mesh LLM invite token"),
        (lambda t: t[:10] + ("A" if t[10] != "A" else "B") + t[11:], "damaged"),
        (lambda t: t + ".extra", "truncated or damaged"),
        (lambda t: "mesh1.!!!.???", "damaged"),
    ],
)
def test_bad_tokens_are_refused_with_one_line(mangle, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidToken, match=message) as caught:
        decode_token(mangle(TOKEN.encode()))
    assert "\n" not in caught.value.message


def forge(values: dict) -> str:
    import hashlib

    payload = json.dumps(values).encode()
    encode = lambda b: base64.urlsafe_b64encode(b).decode().rstrip("=")  # noqa: E731
    return f"mesh1.{encode(payload)}.{encode(hashlib.sha256(payload).digest()[:6])}"


def test_a_newer_format_asks_for_an_upgrade() -> None:
    with pytest.raises(InvalidToken, match="upgrade mesh-llm"):
        decode_token(forge({"version": 2, "mesh_id": "m", "etcd": ["a:1"], "secret": ""}))


def test_well_formed_but_empty_fields_are_refused() -> None:
    with pytest.raises(InvalidToken, match="names no mesh"):
        decode_token(forge({"version": 1, "mesh_id": "", "etcd": [], "secret": ""}))
    with pytest.raises(InvalidToken, match="damaged"):
        decode_token(
            forge({"version": 1, "mesh_id": "m", "etcd": ["a:1"], "secret": "", "unknown": 1})
        )
    with pytest.raises(InvalidToken, match="damaged"):
        decode_token(forge([1, 2]))  # type: ignore[arg-type]
