"""A vision model served by `mesh-llm serve` from config.toml: the model with its projector
(`mmproj`), registered together, started with `--mmproj`, marked as taking images in
/v1/models, and a chat request carrying an image answered through the gateway with the
image's patches counted in the prompt."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest
from harness import local_serve
from helpers import descendants, png

from meshllm.cli.make_projector import ProjectorShape, cached_projector

pytestmark = pytest.mark.e2e


def test_a_configured_projector_lets_the_model_see_images(tmp_path: Path, tiny_model: Path) -> None:
    shape = ProjectorShape()
    projector = cached_projector(shape)
    (tmp_path / "config.toml").write_text(
        f"version = 1\n[[models]]\nmodel = '{tiny_model}'\nmmproj = '{projector}'\n"
    )
    node = local_serve(tmp_path / "state", env={"MESH_HOME": str(tmp_path)})
    try:
        node.wait_event("model_ready", timeout=120)
        (listed,) = httpx.get(f"{node.api}/models", timeout=10).json()["data"]
        assert listed["id"] == tiny_model.stem and listed["meshllm"]["vision"] is True
        argv = next(c for c in descendants(node.pid).values() if "--alias" in c)
        assert f"--mmproj {projector}" in argv
        image = "data:image/png;base64," + base64.b64encode(png(40, 24)).decode()
        question = {"type": "text", "text": "What is in this picture?"}

        def prompt_tokens(*parts: dict) -> int:
            reply = httpx.post(
                f"{node.api}/chat/completions",
                json={
                    "model": tiny_model.stem,
                    "max_tokens": 2,
                    "messages": [{"role": "user", "content": list(parts)}],
                },
                timeout=60,
            )
            assert reply.status_code == 200, reply.text
            return int(reply.json()["usage"]["prompt_tokens"])

        with_image = prompt_tokens(question, {"type": "image_url", "image_url": {"url": image}})
        assert with_image - prompt_tokens(question) == shape.patches
    finally:
        node.stop()
