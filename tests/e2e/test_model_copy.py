"""A model whose file is on a node without room for it runs on a node without the file, for
real: two nodes in their own network namespaces. n1 serves a model from its file (`--gguf`)
but offers it no memory; n2 is a standby with room and no file. The scheduler places the
replica on n2 (what fits one device is never split), n2's worker copies the file from n1's
registry and serves it, answering as llama-server on the original file does; the console
says why the replica runs where it does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import ServeProcess, lab_mesh, lab_node, wait_for
from test_pipeline_split import CONTEXT, PROMPT, solo_answer

pytestmark = [pytest.mark.e2e, pytest.mark.netns, pytest.mark.slow]
COMMON = ["--threads", "1", "--parallel", "2", "--context", str(CONTEXT)]


@pytest.fixture(scope="module")
def nodes(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
    tuple[dict[str, ServeProcess], Path]
]:  # fmt: skip
    with lab_mesh(tmp_path_factory, "copies", 2, "the model-copy suite") as (lab, nodes, state):
        h1, h2 = lab.hosts
        first = lab_node(
            h1, "n1", state, "serve", "--gguf", str(tiny_model), "--max-vram", "0.001", *COMMON
        )
        nodes["n1"] = first.start()
        token = first.wait_event("ready")["token"]
        nodes["n2"] = lab_node(h2, "n2", state, "serve", "--join", token, "--standby", *COMMON)
        nodes["n2"].start().wait_event("ready")
        yield nodes, state


def test_a_node_without_the_file_runs_a_copy_of_it(
    nodes: tuple[dict[str, ServeProcess], Path], tiny_model: Path, llama_server_bin: str
) -> None:
    mesh, state = nodes
    model = tiny_model.stem
    wait_for(lambda: mesh["n1"].served().get(model) == ["n2"], 120)
    [copy] = (state / "n2" / "llama-cache" / "copies").rglob("model.gguf")
    assert copy.read_bytes() == tiny_model.read_bytes()
    assert not list((state / "n1" / "llama-cache").rglob("copies/*/model.gguf"))
    reply = (
        mesh["n1"]
        .client(timeout=120)
        .chat.completions.create(model=model, messages=PROMPT, max_tokens=24, temperature=0, seed=1)
    )
    assert reply.choices[0].message.content == solo_answer(llama_server_bin, tiny_model)
    [shown] = [m for m in mesh["n1"].status()["models"] if m["id"] == model]
    assert any("n2 runs a copy of it" in reason for reason in shown["why"]), shown["why"]
