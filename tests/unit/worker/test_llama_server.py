from __future__ import annotations

import pytest

from meshllm.worker.llama_server import (
    HOST_OUTPUT_ON_CPU,
    InstanceSpec,
    SplitLayout,
    build_argv,
    flash_attn_over_rpc,
    peer_layer_count,
    strip_owned_flags,
)


def spec(**overrides: object) -> InstanceSpec:
    values: dict[str, object] = {
        "instance_id": "i1",
        "model": "m",
        "model_path": "/m.gguf",
        "context": 2048,
    }
    values.update(overrides)
    return InstanceSpec(**values)  # type: ignore[arg-type]


def test_argv_listens_on_loopback_with_metrics() -> None:
    argv = build_argv("/bin/llama-server", spec(parallel=3, gpu_layers=999), 41000)
    assert argv[0] == "/bin/llama-server"
    pairs = dict(zip(argv[1::2], argv[2::2], strict=False))
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert argv[argv.index("--port") + 1] == "41000"
    assert argv[argv.index("--ctx-size") + 1] == "2048"
    assert argv[argv.index("--parallel") + 1] == "3"
    assert argv[argv.index("--n-gpu-layers") + 1] == "999"
    assert argv[argv.index("--alias") + 1] == "m"
    assert argv[argv.index("--cache-ram") + 1] == "256"  # bounded: the default is 8 GiB
    assert "--metrics" in argv and pairs


def test_argv_gives_a_projector_only_when_there_is_one() -> None:
    argv = build_argv("b", spec(mmproj_path="/p/mmproj.gguf"), 41000)
    assert argv[argv.index("--mmproj") + 1] == "/p/mmproj.gguf"
    assert "--mmproj" not in build_argv("b", spec(), 41000)


@pytest.mark.parametrize(
    ("overrides", "drafted", "draft_layers"),
    [
        ({"draft_path": "/d.gguf", "gpu_layers": 999}, True, "999"),
        ({"draft_path": "/d.gguf"}, True, "0"),  # a CPU device: the draft stays there too
        ({}, False, None),
        (  # a split's host drafts nothing: its draft would be one more thing per token
            {
                "draft_path": "/d.gguf",
                "split": SplitLayout(("127.0.0.1:1",), (0.5,), 0.5, 8, host_is_cpu=False),
            },
            False,
            None,
        ),
    ],
)
def test_argv_drafts_with_the_draft_model_where_there_is_one(
    overrides: dict[str, object], drafted: bool, draft_layers: str | None
) -> None:
    argv = build_argv("b", spec(**overrides), 41000)
    assert ("--model-draft" in argv) is drafted
    if drafted:  # without --spec-type the draft is loaded and never asked
        assert argv[argv.index("--model-draft") + 1] == "/d.gguf"
        assert argv[argv.index("--spec-type") + 1] == "draft-simple"
        assert argv[argv.index("--spec-draft-ngl") + 1] == draft_layers


def test_the_draft_is_the_workers_to_give() -> None:
    extra = ["-md", "/other.gguf", "--spec-type", "ngram-simple", "--spec-draft-n-max", "8"]
    argv = build_argv("b", spec(draft_path="/d.gguf", extra_args=extra), 41000)
    assert "/other.gguf" not in argv and "ngram-simple" not in argv
    assert argv[-2:] == ["--spec-draft-n-max", "8"]  # how it drafts stays the user's


def test_user_args_come_last_without_owned_flags() -> None:
    extra = [
        "--port",
        "1",
        "--flash-attn",
        "on",
        "--host=0.0.0.0",
        "-c",
        "9",
        "--metrics",
        "--pooling",
        "cls",
        "--cache-ram",
        "-1",
    ]
    argv = build_argv("b", spec(extra_args=extra), 41000)
    assert argv[-4:] == ["--flash-attn", "on", "--pooling", "cls"]
    assert argv.count("--port") == 1 and "0.0.0.0" not in argv and "9" not in argv
    assert argv.count("--cache-ram") == 1 and "-1" not in argv


@pytest.mark.parametrize(
    ("args", "kept"),
    [
        ([], []),
        (["--rpc", "a:1,b:2", "-t", "4"], ["-t", "4"]),
        (["--model=x", "--temp", "0"], ["--temp", "0"]),
        (["-np", "8"], []),
    ],
)
def test_strip_owned_flags(args: list[str], kept: list[str]) -> None:
    assert strip_owned_flags(args) == kept


@pytest.mark.parametrize(
    ("host_is_cpu", "expected"),
    [
        (
            True,
            ["--rpc", "127.0.0.1:1,127.0.0.1:2", "--flash-attn", "off", "--n-gpu-layers", "5",
             "--override-tensor", HOST_OUTPUT_ON_CPU, "--tensor-split", "0.3000,0.2000"],
        ),
        (
            False,
            ["--rpc", "127.0.0.1:1,127.0.0.1:2", "--flash-attn", "off", "--n-gpu-layers", "999",
             "--tensor-split", "0.3000,0.2000,0.5000"],
        ),
    ],
)  # fmt: skip
def test_a_split_host_puts_its_peers_first_and_keeps_the_output(
    host_is_cpu: bool, expected: list[str]
) -> None:
    layout = SplitLayout(("127.0.0.1:1", "127.0.0.1:2"), (0.3, 0.2), 0.5, 8, host_is_cpu)
    assert layout.argv() == expected


@pytest.mark.parametrize(
    ("blocks", "host_share", "peers"), [(8, 0.5, 4), (8, 0.99, 1), (8, 0.01, 7), (1, 0.5, 1)]
)
def test_a_cpu_host_keeps_at_least_one_layer_and_leaves_one(
    blocks: int, host_share: float, peers: int
) -> None:
    assert peer_layer_count(blocks, host_share) == peers


@pytest.mark.parametrize(
    ("head_k", "head_v", "on"),
    [(128, 128, True), (64, 64, False), (256, 256, False), (192, 128, False), (0, 0, False)],
)
def test_flash_attention_over_rpc_only_for_head_sizes_known_to_work(
    head_k: int, head_v: int, on: bool
) -> None:
    assert flash_attn_over_rpc(head_k, head_v) is on
    layout = SplitLayout(("127.0.0.1:1",), (0.5,), 0.5, 8, False, flash_attn=on)
    assert layout.argv()[layout.argv().index("--flash-attn") + 1] == ("on" if on else "off")


def test_a_split_host_keeps_no_prompt_cache() -> None:
    layout = SplitLayout(("127.0.0.1:1",), (0.5,), 0.5, 8, True)
    argv = build_argv("llama-server", spec(split=layout, prompt_cache_mib=256), 8080)
    assert argv[argv.index("--cache-ram") + 1] == "0"
    solo = build_argv("llama-server", spec(prompt_cache_mib=256), 8080)
    assert solo[solo.index("--cache-ram") + 1] == "256"
