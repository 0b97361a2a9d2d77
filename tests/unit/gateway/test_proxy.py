"""The proxy's pure parts: what routing reads from a body, and what an upstream answer means."""

from __future__ import annotations

import json

import pytest

from meshllm.core.errors import InvalidRequest
from meshllm.gateway.proxy import (
    TokenCounter,
    Verdict,
    judge,
    parse_json,
    parse_request,
    rejection,
    request_id_of,
)
from meshllm.gateway.routing import session_key


@pytest.mark.parametrize(
    ("status", "relay_error", "verdict"),
    [
        (200, False, Verdict.RELAY),
        (200, True, Verdict.RETRY),  # a relay's own answer is never the model's
        (400, False, Verdict.REJECT),
        (404, False, Verdict.REJECT),
        (413, False, Verdict.REJECT),
        (500, False, Verdict.REJECT),  # llama-server's answer to input it cannot handle
        (501, False, Verdict.REJECT),
        (401, True, Verdict.RETRY),  # the relay refused our secret: that replica is no use
        (404, True, Verdict.RETRY),  # the relay no longer runs that instance
        (502, False, Verdict.RETRY),
        (503, False, Verdict.RETRY),  # loading
        (504, False, Verdict.RETRY),
    ],
)
def test_judge(status: int, relay_error: bool, verdict: Verdict) -> None:
    assert judge(status, relay_error) is verdict


@pytest.mark.parametrize(
    ("status", "raw", "http", "message", "code"),
    [
        (
            400,
            b'{"error":{"code":400,"message":"bad role","type":"invalid_request_error"}}',
            400,
            "bad role",
            "invalid_request_error",
        ),
        (
            500,
            b'{"error":{"code":500,"message":"[json.exception.parse_error.101] surrogate",'
            b'"type":"server_error"}}',
            400,
            "[json.exception.parse_error.101] surrogate",
            "server_error",
        ),
        (404, b"File Not Found", 404, "File Not Found", "invalid_request"),
        (500, b"", 400, "the model server refused the request (500)", "invalid_request"),
        (400, b'{"error": "plain"}', 400, "plain", "invalid_request"),
        (400, b'{"error":{"message":"x","type":"Weird Type!"}}', 400, "x", "invalid_request"),
    ],
)
def test_rejection_is_openai_shaped(
    status: int, raw: bytes, http: int, message: str, code: str
) -> None:
    error = rejection(status, raw)
    assert (error.http_status, error.message, error.error_code) == (http, message, code)
    assert error.openai_type == "invalid_request_error"


def test_rejection_message_is_bounded() -> None:
    error = rejection(500, json.dumps({"error": {"message": "x" * 100_000}}).encode())
    assert len(error.message) < 1100


@pytest.mark.parametrize(
    "body",
    [
        b'{"temperature": NaN}',
        b'{"temperature": Infinity}',
        b'{"temperature": -Infinity}',
        b'{"temperature": 1e999}',
        b'{"n": ' + b"9" * 5000 + b"}",  # more digits than Python turns into an int
        b"[" * 100_000 + b"]" * 100_000,  # deeper than the parser recurses
        b"\xff\xfe\x00",
        b"{not json",
    ],
)
def test_parse_json_refuses_what_is_not_strict_json(body: bytes) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_json(body)
    assert len(caught.value.message) < 300


@pytest.mark.parametrize(
    ("route", "payload", "stream"),
    [
        ("/v1/chat/completions", {"model": "m", "messages": [{}], "stream": None}, False),
        ("/v1/chat/completions", {"model": "m", "messages": [{}], "stream": True}, True),
        ("/v1/completions", {"model": "m"}, False),  # no prompt: from the start of a document
        ("/v1/completions", {"model": "m", "prompt": None}, False),
        ("/v1/responses", {"model": "m", "input": "hi"}, False),
        ("/v1/messages", {"model": "m", "messages": [{}], "max_tokens": 4}, False),
    ],
)
def test_spec_valid_requests_are_accepted(route: str, payload: dict, stream: bool) -> None:
    request = parse_request(json.dumps(payload).encode(), route)
    assert (request.model, request.stream) == ("m", stream)


@pytest.mark.parametrize(
    ("given", "kept"),
    [("abc-123", True), ("a" * 128, True), ("a" * 129, False), ("x\r\ny", False), ("", False)],
)
def test_request_id_is_kept_only_when_plain(given: str, kept: bool) -> None:
    rid = request_id_of({"x-request-id": given})
    assert (rid == given) is kept and 0 < len(rid) <= 128


@pytest.mark.parametrize(
    ("stream", "chunks", "completion"),
    [
        (True, [b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n'] * 3, 3),
        (True, [b'data: {"type":"content_block_delta","delta":{"text":"a"}}\n\n'] * 2, 2),
        (True, [b'data: {"type":"response.output_text.delta","delta":"a"}\n\n'] * 4, 4),
        (True, [b'data: {"choices":[{"delta":{"content":""}}]}\n\n'], 0),
        (False, [b'{"usage": {"prompt_tokens": 5, ', b'"completion_tokens": 7}}'], 7),
        (True, [b'data: {"delta":{"role":"assistant","content":null}}\n\n'], 0),
        (True, [b'data: {"choices":[{"text":" a"}]}\n\n', b'data: {"choices":[{"text":"b"}]}'], 2),
        (False, [b"not json"], 0),
    ],
)
def test_token_counter(stream: bool, chunks: list[bytes], completion: int) -> None:
    counter = TokenCounter(stream)
    for chunk in chunks:
        counter(chunk)
    assert counter.usage()[1] == completion


STREAM = (
    b'data: {"choices":[{"delta":{"role":"assistant","content":null}}]}\n\n'
    b'data: {"choices":[{"delta":{"content":"Hel"}}]}\n\n'
    b'data: {"choices":[{"delta":{"content":""}}]}\n\n'
    b'data: {"choices":[{"text":"a"}]}\n\n'
    b'data: {"choices":[{"delta":{"content":"\\"q"}}]}\n\n'
    b'data: {"type":"response.output_text.delta","delta":"x"}\n\n'
    b'data: {"choices":[{"delta":{"content":"lo"}}]}\n\n'
    b"data: [DONE]\n\n"
)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 11, 12, 13, 50])
def test_token_counter_wherever_the_network_cuts_the_stream(size: int) -> None:
    for start in range(size):  # every way of cutting it into chunks of `size`
        counter = TokenCounter(True)
        counter(STREAM[:start])
        for at in range(start, len(STREAM), size):
            counter(STREAM[at : at + size])
        assert counter.usage()[1] == 5, (size, start)


@pytest.mark.parametrize(
    ("headers", "extra", "same_as_plain"),
    [
        ({}, {}, True),
        ({"x-session-id": "s1"}, {}, False),
        ({}, {"user": "u1"}, False),
    ],
)
def test_the_parsed_payload_gives_the_session_key(
    headers: dict, extra: dict, same_as_plain: bool
) -> None:
    payload = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    plain = parse_request(json.dumps(payload).encode(), "/v1/chat/completions")
    request = parse_request(json.dumps({**payload, **extra}).encode(), "/v1/chat/completions")
    plain_key = session_key("/v1/chat/completions", plain.payload, {})
    key = session_key("/v1/chat/completions", request.payload, headers)
    assert key and (key == plain_key) is same_as_plain
