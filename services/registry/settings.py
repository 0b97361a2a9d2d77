from __future__ import annotations

from pathlib import Path

from pydantic import Field

from meshllm.core.config import BaseServiceSettings


def _home(*parts: str) -> str:
    return str(Path.home().joinpath(*parts))


class RegistrySettings(BaseServiceSettings):
    grpc_port: int = 9350
    http_port: int = 9351
    models_dir: str = Field(
        default_factory=lambda: _home(".mesh-llm", "models"),
        description="where `--model NAME` looks for NAME.gguf",
    )
    cache_dir: str = Field(
        default_factory=lambda: _home(".cache", "mesh-llm", "models"),
        description="where fetched models are kept",
    )
    ranking_threads: int = Field(
        1, ge=1, description="threads for ranking a mixture's experts (llama-imatrix)"
    )
