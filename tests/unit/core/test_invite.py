from __future__ import annotations

import base64
import hashlib
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshllm.core.invite import InvalidToken, InviteToken, decode_token

TOKEN = InviteToken(
    mesh_id="m-1",
    etcd=["10.0.0.1:2379", "10.0.0.2:2379"],
    authority="10.0.0.1:9339",
    ca="q0ZpbmdlcnByaW50",
    invite="ab12cd34.secret",
    role="client",
    expires=2_000_000_000,
    mesh_name="lab",
)


def test_round_trip() -> None:
    text = TOKEN.encode()
    assert text.startswith("mesh1.") and " " not in text
    assert decode_token(text) == TOKEN
    assert decode_token(f"  {text}\n") == TOKEN
    assert (TOKEN.invite_id, TOKEN.invite_secret) == ("ab12cd34", "secret")


def test_expiry() -> None:
    assert not TOKEN.expired(now=1_999_999_999) and TOKEN.expired(now=2_000_000_000)
    never = InviteToken(**{**TOKEN.__dict__, "expires": 0})
    assert not never.expired(now=time.time() * 10)


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


def forge(values: object) -> str:
    """A token with a correct checksum around any payload: the checksum proves nothing."""
    payload = json.dumps(values).encode()
    encode = lambda b: base64.urlsafe_b64encode(b).decode().rstrip("=")  # noqa: E731
    return f"mesh1.{encode(payload)}.{encode(hashlib.sha256(payload).digest()[:6])}"


GOOD = {k: v for k, v in TOKEN.__dict__.items()}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({**GOOD, "version": 3}, "upgrade mesh-llm"),
        ({"version": 1, "mesh_id": "m", "etcd": ["a:1"], "secret": "s"}, "older mesh-llm"),
        ({**GOOD, "mesh_id": ""}, "names no mesh"),
        ({**GOOD, "etcd": []}, "names no mesh"),
        ({**GOOD, "etcd": [1]}, "names no mesh"),
        ({**GOOD, "etcd": "a:1"}, "damaged"),
        ({**GOOD, "invite": "nodot"}, "carries no invite"),
        ({**GOOD, "authority": ""}, "carries no invite"),
        ({**GOOD, "role": "admin"}, "role 'admin' is unknown"),
        ({**GOOD, "expires": "soon"}, "damaged"),
        ({**GOOD, "expires": True}, "damaged"),
        ({**GOOD, "extra": {"a": 1}}, "damaged"),
        ({**GOOD, "unknown": 1}, "damaged"),
        ({**GOOD, "mesh_id": ["m"]}, "damaged"),
        ([1, 2], "damaged"),
        ({**GOOD, "version": "2"}, "format version '2'"),
    ],
)
def test_well_formed_but_wrong_payloads_are_refused(values: object, message: str) -> None:
    with pytest.raises(InvalidToken, match=message) as caught:
        decode_token(forge(values))
    assert "\n" not in caught.value.message


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.text(max_size=300),
        JSON.map(forge),
        st.dictionaries(st.sampled_from(sorted(GOOD)), JSON, max_size=len(GOOD)).map(
            lambda d: forge({**GOOD, **d})
        ),
    )
)
def test_any_input_gives_a_token_or_a_one_line_refusal(text: str) -> None:
    try:
        token = decode_token(text)
    except InvalidToken as exc:
        assert exc.message and "\n" not in exc.message and len(exc.message) < 300
        return
    assert isinstance(token.mesh_id, str) and token.etcd and token.role in ("node", "client")
