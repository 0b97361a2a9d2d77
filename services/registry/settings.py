from __future__ import annotations

from pathlib import Path

from pydantic import Field

from meshllm.core.config import BaseServiceSettings

from .quality import DEFAULT_MAX_PPL_RATIO, DEFAULT_MIN_SAME_TOP


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
    copies_dir: str = Field(
        "",
        description="where this node's workers keep copies of models whose file is elsewhere "
        "(finished copies are offered to the mesh); empty: none",
    )
    copies_rescan_s: float = Field(
        10.0, gt=0, description="how often the copy folders are looked at for new copies"
    )
    ranking_threads: int = Field(
        1, ge=1, description="threads for ranking and measuring a mixture's experts"
    )
    shard_max_ppl_ratio: float = Field(
        DEFAULT_MAX_PPL_RATIO, gt=1, description="the quality gate: a shard's perplexity over "
        "the full model's may be at most this"
    )  # fmt: skip
    shard_min_same_top: float = Field(
        DEFAULT_MIN_SAME_TOP, ge=0, le=1, description="the quality gate: how often a shard's "
        "most likely token must be the full model's, at least"
    )  # fmt: skip

    @property
    def shard_path(self) -> Path:
        """Where the expert shards this registry writes are kept, a folder per model."""
        return Path(self.cache_dir).expanduser() / "shards"
