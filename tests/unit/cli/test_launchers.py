"""The agent harness launchers: the model each gets, and the argv and environment that point
it at the mesh (cli/launchers.py); the command's checks that need no mesh."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meshllm.cli import launchers as ln
from meshllm.cli.main import main
from meshllm.core.ports import free_port

BASE = "http://127.0.0.1:9400"
SMALL = ln.Served("smollm2-135m-instruct", 98_362_432, 8192)
CODER_7B = ln.Served("Qwen2.5-Coder-7B-Instruct-Q4_K_M", 4_680_000_000, 32_768)
QWEN3_32B = ln.Served("Qwen3-32B-Q4_K_M", 19_762_150_048, 40_960)
BIG_UNLISTED = ln.Served("my-own-70b", 40_000_000_000, 0)
GEMMA_27B = ln.Served("Gemma-3-27B-it-Q4_K_M", 17_000_000_000, 8192)


def test_served_models_reads_the_listing() -> None:
    listing = {
        "object": "list",
        "data": [
            {
                "id": "a",
                "meshllm": {
                    "replicas": [{"node": "x", "context": 8192}, {"node": "y", "context": 4096}],
                    "size_bytes": 123,
                },
            },
            {"id": "b", "meshllm": {"replicas": [], "size_bytes": 0}},
            {"id": "c"},
        ],
    }
    assert ln.served_models(listing) == [
        ln.Served("a", 123, 4096),
        ln.Served("b", 0, 0),
        ln.Served("c", 0, 0),
    ]


@pytest.mark.parametrize(
    ("served_as", "entry"),
    [
        ("Qwen3-32B-Q4_K_M", "Qwen3-32B-Q4_K_M"),  # its catalog name
        ("qwen3-32b", "Qwen3-32B-Q4_K_M"),  # an alias, any case
        ("qwen2.5-coder-7b-instruct-q4_k_m", "Qwen2.5-Coder-7B-Instruct-Q4_K_M"),  # its file
        ("Meta-Llama-3.1-8B-Instruct-Q4_K_M", "Llama-3.1-8B-Instruct-Q4_K_M"),
        ("gpt-oss-120b-Q4_K_M-00001-of-00002", None),  # a part is not a name
        ("smollm2-135m-instruct", None),
    ],
)
def test_catalog_entry(served_as: str, entry: str | None) -> None:
    found = ln.catalog_entry(served_as)
    assert (found.name if found else None) == entry


@pytest.mark.parametrize(
    ("served", "requested", "chosen", "why"),
    [
        # the largest tool-capable catalog model, though an unlisted one is larger
        ([SMALL, CODER_7B, QWEN3_32B, BIG_UNLISTED, GEMMA_27B], "", QWEN3_32B, "tool calls"),
        ([SMALL, CODER_7B, GEMMA_27B], "", CODER_7B, "(7B)"),
        # none marked for tool calls: the largest by size
        ([SMALL, GEMMA_27B, BIG_UNLISTED], "", BIG_UNLISTED, "40.0 GB"),
        ([SMALL], "", SMALL, "the largest one, 0.1 GB"),
        # asked for: that one, even where a stronger one is served
        ([SMALL, QWEN3_32B], "smollm2-135m-instruct", SMALL, "--model"),
    ],
)
def test_choose_model(served: list[ln.Served], requested: str, chosen: ln.Served, why: str) -> None:
    choice = ln.choose_model(served, requested)
    assert choice.model == chosen
    assert why in choice.reason


@pytest.mark.parametrize(
    ("served", "requested", "message"),
    [
        (
            [QWEN3_32B, SMALL],
            "gpt-4o",
            "--model gpt-4o: the mesh does not serve it (it serves Qwen3-32B-Q4_K_M, "
            "smollm2-135m-instruct)",
        ),
        ([], "", "the mesh serves no model yet"),
    ],
)
def test_choose_model_refuses(served: list[ln.Served], requested: str, message: str) -> None:
    with pytest.raises(ln.LaunchError) as raised:
        ln.choose_model(served, requested)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


API = ln.Api(BASE)


def test_goose_uses_its_openai_provider_on_the_mesh() -> None:
    launch = ln.goose(API, CODER_7B, [SMALL, CODER_7B], [])
    assert launch.argv == ["goose", "session"]
    assert launch.env == {
        "GOOSE_PROVIDER": "openai",
        "GOOSE_MODEL": CODER_7B.id,
        "OPENAI_HOST": BASE,
        "OPENAI_BASE_PATH": "v1/chat/completions",
        "OPENAI_API_KEY": ln.PLACEHOLDER_KEY,
        "GOOSE_CONTEXT_LIMIT": "32768",
    }
    # arguments replace `session`; no context known, no limit given
    launch = ln.goose(API, BIG_UNLISTED, [BIG_UNLISTED], ["run", "-t", "hi"])
    assert launch.argv == ["goose", "run", "-t", "hi"]
    assert "GOOSE_CONTEXT_LIMIT" not in launch.env


def test_claude_code_uses_the_messages_api_under_every_model_name() -> None:
    launch = ln.claude(API, SMALL, [SMALL], ["-p", "say hi"])
    env = launch.env
    assert env["ANTHROPIC_BASE_URL"] == BASE  # Claude Code appends /v1/messages itself
    assert env["ANTHROPIC_AUTH_TOKEN"] == ln.PLACEHOLDER_KEY
    assert env["ANTHROPIC_API_KEY"] == ""  # the user's own key stays out of the mesh
    for key in (
        "ANTHROPIC_MODEL",
        "ANTHROPIC_DEFAULT_OPUS_MODEL",
        "ANTHROPIC_DEFAULT_SONNET_MODEL",
        "ANTHROPIC_DEFAULT_HAIKU_MODEL",
        "ANTHROPIC_SMALL_FAST_MODEL",
        "CLAUDE_CODE_SUBAGENT_MODEL",
    ):
        assert env[key] == SMALL.id
    assert env["CLAUDE_CODE_MAX_CONTEXT_TOKENS"] == "8192"
    assert env["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] == "2048"
    assert env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    # --settings carries the same variables, over any in the user's settings file
    assert launch.argv[:4] == ["claude", "--model", SMALL.id, "--settings"]
    assert json.loads(launch.argv[4]) == {"env": env}
    assert launch.argv[5:] == ["-p", "say hi"]
    unknown_context = ln.claude(API, BIG_UNLISTED, [BIG_UNLISTED], []).env
    assert "CLAUDE_CODE_MAX_CONTEXT_TOKENS" not in unknown_context


def test_opencode_gets_the_mesh_as_a_provider_with_every_model() -> None:
    launch = ln.opencode(API, CODER_7B, [SMALL, CODER_7B, BIG_UNLISTED], ["run", "say hi"])
    assert launch.argv == ["opencode", "run", "say hi"]
    assert list(launch.env) == ["OPENCODE_CONFIG_CONTENT"]
    config = json.loads(launch.env["OPENCODE_CONFIG_CONTENT"])
    assert config["$schema"] == "https://opencode.ai/config.json"
    assert config["model"] == config["small_model"] == f"mesh/{CODER_7B.id}"
    provider = config["provider"]["mesh"]
    assert provider["npm"] == "@ai-sdk/openai-compatible"
    assert provider["options"] == {"baseURL": f"{BASE}/v1", "apiKey": ln.PLACEHOLDER_KEY}
    assert provider["models"] == {
        SMALL.id: {
            "name": SMALL.id,
            "limit": {"context": 8192, "output": 2048},
        },
        CODER_7B.id: {
            "name": CODER_7B.id,
            "limit": {"context": 32768, "output": 8192},
        },
        BIG_UNLISTED.id: {"name": BIG_UNLISTED.id},
    }


def test_every_harness_has_a_builder_and_an_install_hint() -> None:
    assert set(ln.HARNESSES) == set(ln.INSTALL_HINTS) == {"goose", "claude", "opencode"}
    for name, build in ln.HARNESSES.items():
        launch = build(API, SMALL, [SMALL], ["x"])
        assert launch.harness == name and launch.argv[0] == name and launch.argv[-1] == "x"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["claude", "--join", "nonsense"], "--join: this is not a Mesh LLM invite token"),
        (["goose", "--join", "mesh1.x.y", "--auto"], "--join and --auto both choose the mesh"),
        (["opencode", "--port", "0"], "--port 0 is not a valid port"),
        (["opencode", "--api", "mesh:9337"], "--api mesh:9337: give a URL"),
        (["goose", "--api", "http://m:9337", "--auto"], "--api names a mesh's API"),
    ],
)
def test_bad_flags_end_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize("harness", ["goose", "claude", "opencode"])
def test_a_missing_harness_says_how_to_install_it(
    harness: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main([harness, "--port", str(free_port())]) == 1
    err = capsys.readouterr().err
    assert err == f"mesh-llm: error: {ln.INSTALL_HINTS[harness]}\n"


def test_no_mesh_and_no_token_says_what_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    assert main(["opencode", "--print-config", "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert f"no mesh answers on http://127.0.0.1:{port}/v1" in err
    assert "`mesh-llm serve`" in err and "--join TOKEN" in err and err.count("\n") == 1


def test_the_meshs_api_key_goes_to_every_harness() -> None:
    api = ln.Api(BASE, key="sk-mesh")
    assert ln.goose(api, SMALL, [SMALL], []).env["OPENAI_API_KEY"] == "sk-mesh"
    assert ln.claude(api, SMALL, [SMALL], []).env["ANTHROPIC_AUTH_TOKEN"] == "sk-mesh"
    config = json.loads(ln.opencode(api, SMALL, [SMALL], []).env["OPENCODE_CONFIG_CONTENT"])
    assert config["provider"]["mesh"]["options"]["apiKey"] == "sk-mesh"
