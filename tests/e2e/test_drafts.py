"""A node serving a model with a draft (`serve --gguf M --draft D`): both registered, the
replica placed with room for both, llama-server started with the draft, and the answers
exactly those of llama-server running the model alone; a --draft without exactly one model
is refused in one line."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest
from harness import local_serve, mesh_llm
from helpers import descendants
from test_pipeline_split import CONTEXT, PROMPT, solo_answer

pytestmark = [pytest.mark.e2e]


def test_a_model_with_its_draft_answers_as_it_does_alone(
    tiny_model: Path, draft_model: Path, tmp_path: Path, llama_server_bin: str
) -> None:
    node = local_serve(
        tmp_path / "a", tiny_model, context=CONTEXT, extra=("--draft", str(draft_model))
    )
    try:
        assert node.wait_event("registered")["model"] == tiny_model.stem
        node.wait_event("model_ready")
        [server] = [c for c in descendants(node.pid).values() if "--model-draft" in c]
        assert f"--model-draft {draft_model}" in server
        reply = node.client(timeout=120).chat.completions.create(
            model=tiny_model.stem, messages=PROMPT, max_tokens=24, temperature=0, seed=1
        )
        assert reply.choices[0].message.content == solo_answer(llama_server_bin, tiny_model)
        raw = httpx.post(
            f"{node.api}/completions",
            json={"model": tiny_model.stem, "prompt": "One, two,", "max_tokens": 16},
            timeout=120,
        ).json()
        assert raw["timings"]["draft_n"] > 0  # the draft proposed tokens through the mesh
        [shown] = [m for m in node.status()["models"] if m["id"] == tiny_model.stem]
        assert any(f"drafts with {draft_model.stem}" in why for why in shown["why"]), shown
    finally:
        node.stop()


def test_a_draft_for_two_models_is_refused_in_one_line(tiny_model: Path, draft_model: Path) -> None:
    done = subprocess.run(
        mesh_llm("serve", "--gguf", str(tiny_model), "--gguf", str(draft_model), "--draft",
                 str(draft_model)),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    [line] = done.stderr.strip().splitlines()
    assert "--draft drafts for one model" in line


def test_auto_for_a_model_the_catalog_has_no_draft_for_is_refused(
    tiny_model: Path, tmp_path: Path
) -> None:
    node = local_serve(tmp_path / "a", tiny_model, extra=("--draft", "auto"))
    assert node.process is not None and node.process.wait(120) != 0
    [error] = [e for e in node.events if "output" in e and "error" in e["output"]]
    assert "has no draft in the catalog" in error["output"], node.events
