"""What an agent harness (goose, Claude Code, opencode) needs to use the mesh, as pure
functions: which served model to give it, and the argv and environment that point it at the
mesh's API. `mesh-llm goose|claude|opencode` (cli/commands/launch.py) runs the result.

Every harness is configured through its environment and its command line only: no file is
written, neither in the user's configuration nor a temporary one.

- goose: its built-in `openai` provider, aimed at the mesh with `OPENAI_HOST` and
  `OPENAI_BASE_PATH` (goose reads every setting from the environment before its config file).
- Claude Code: Anthropic's Messages API, which the gateway serves at `/v1/messages`, with
  `ANTHROPIC_BASE_URL`, a token, and the model under every name Claude Code asks for (its
  main, small-fast and sub-agent models). The same variables also go in `--settings` (JSON),
  which outranks the `env` block of the user's own settings file.
- opencode: a custom provider (`@ai-sdk/openai-compatible`) in `OPENCODE_CONFIG_CONTENT`,
  which opencode merges over its other config files, listing every served model.

Each harness gets the mesh's API key (`--api-key`), or a placeholder where the API needs
none, so a key for another provider in the user's environment (`OPENAI_API_KEY`,
`ANTHROPIC_API_KEY`) or goose's keyring is never sent to the mesh."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from meshllm.registry import model_catalog

PLACEHOLDER_KEY = "mesh-llm"  # for an API that takes no key; harnesses want one set
OPENCODE_PROVIDER = "mesh"

INSTALL_HINTS = {
    "goose": "goose is not installed: see https://block.github.io/goose/docs/getting-started/"
    "installation (curl -fsSL https://github.com/block/goose/releases/download/stable/"
    "download_cli.sh | bash)",
    "claude": "claude (Claude Code) is not installed: npm install -g @anthropic-ai/claude-code",
    "opencode": "opencode is not installed: npm install -g opencode-ai "
    "(or curl -fsSL https://opencode.ai/install | bash)",
}


class LaunchError(Exception):
    """Why a harness cannot be launched, in one line."""


@dataclass(frozen=True)
class Served:
    """A model the mesh serves, as `GET /v1/models` describes it."""

    id: str
    size_bytes: int = 0
    context: int = 0  # the smallest context of its replicas; 0 when unknown


@dataclass(frozen=True)
class Choice:
    model: Served
    reason: str  # why this one, for the user


@dataclass(frozen=True)
class Api:
    """The mesh API a harness talks to: `http://host:port`, and its key ("" = none)."""

    base_url: str
    key: str = ""

    @property
    def token(self) -> str:
        return self.key or PLACEHOLDER_KEY


@dataclass(frozen=True)
class Launch:
    harness: str
    argv: list[str]
    env: dict[str, str]  # added to the user's environment for the harness


def served_models(listing: dict[str, Any]) -> list[Served]:
    """The models of a `GET /v1/models` answer."""
    found = []
    for item in listing.get("data", []):
        extra = item.get("meshllm") or {}
        contexts = [r.get("context") or 0 for r in extra.get("replicas", [])]
        contexts = [c for c in contexts if c > 0]
        found.append(
            Served(
                id=item["id"],
                size_bytes=int(extra.get("size_bytes") or 0),
                context=min(contexts) if contexts else 0,
            )
        )
    return found


def catalog_entry(model_id: str) -> model_catalog.CatalogModel | None:
    """The curated catalog's entry for a served model: by name or alias, else by the name of
    its GGUF file (a file served under its own name)."""
    listed = model_catalog.find(model_id)
    if listed is not None:
        return listed
    wanted = model_id.casefold()
    for model in model_catalog.CATALOG:
        stem = PurePosixPath(model.file).name.removesuffix(".gguf")
        if model.split:
            stem = stem.rsplit("-00001-of-", 1)[0]
        if stem.casefold() == wanted:
            return model
    return None


def choose_model(served: Sequence[Served], requested: str = "") -> Choice:
    """The model to give an agent: `requested` if the mesh serves it; else the largest model
    the catalog marks as good at tool calls; else the largest served model."""
    if not served:
        raise LaunchError("the mesh serves no model yet: start one with `mesh-llm serve --model`")
    if requested:
        for model in served:
            if model.id == requested:
                return Choice(model, "asked for with --model")
        names = ", ".join(sorted(m.id for m in served))
        raise LaunchError(f"--model {requested}: the mesh does not serve it (it serves {names})")
    tool_capable = []
    for model in served:
        entry = catalog_entry(model.id)
        if entry is not None and entry.tool_use:
            tool_capable.append((entry, model))
    if tool_capable:
        entry, model = max(tool_capable, key=lambda pair: (pair[0].size_bytes, pair[1].id))
        return Choice(
            model,
            f"the largest model the mesh serves that the catalog marks as good at tool calls "
            f"({entry.parameters})",
        )
    model = max(served, key=lambda m: (m.size_bytes, m.id))
    size = f", {model.size_bytes / 1e9:.1f} GB" if model.size_bytes else ""
    return Choice(
        model,
        f"no served model is marked as good at tool calls in the catalog; the largest one{size}",
    )


def output_tokens(context: int) -> int:
    """How much output a harness may ask for in one reply: a quarter of the context, so the
    rest stays for its prompt (a harness takes the output limit off the context it fills)."""
    return context // 4


def goose(api: Api, model: Served, served: Sequence[Served], extra: Sequence[str]) -> Launch:
    """`goose session` (or `goose EXTRA...`) on goose's OpenAI provider."""
    env = {
        "GOOSE_PROVIDER": "openai",
        "GOOSE_MODEL": model.id,
        "OPENAI_HOST": api.base_url,
        "OPENAI_BASE_PATH": "v1/chat/completions",
        "OPENAI_API_KEY": api.token,
    }
    if model.context:
        env["GOOSE_CONTEXT_LIMIT"] = str(model.context)
    return Launch("goose", ["goose", *(extra or ["session"])], env)


def claude(api: Api, model: Served, served: Sequence[Served], extra: Sequence[str]) -> Launch:
    """`claude --model M --settings JSON EXTRA...` on the gateway's Messages API."""
    env = {
        "ANTHROPIC_BASE_URL": api.base_url,
        "ANTHROPIC_AUTH_TOKEN": api.token,
        "ANTHROPIC_API_KEY": "",
        "ANTHROPIC_MODEL": model.id,
        "ANTHROPIC_DEFAULT_OPUS_MODEL": model.id,
        "ANTHROPIC_DEFAULT_SONNET_MODEL": model.id,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": model.id,
        "ANTHROPIC_SMALL_FAST_MODEL": model.id,
        "CLAUDE_CODE_SUBAGENT_MODEL": model.id,
        # features Anthropic's own API has and a local model does not
        "CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS": "1",
        "DISABLE_PROMPT_CACHING": "1",
        # nothing leaves the machine but the requests to the mesh
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_AUTOUPDATER": "1",
    }
    if model.context:
        # a model Claude Code does not know is taken to hold a million tokens, and asked for
        # more output than a small context leaves room for
        env["CLAUDE_CODE_MAX_CONTEXT_TOKENS"] = str(model.context)
        env["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] = str(output_tokens(model.context))
    settings = json.dumps({"env": env}, separators=(",", ":"))
    return Launch("claude", ["claude", "--model", model.id, "--settings", settings, *extra], env)


def opencode(api: Api, model: Served, served: Sequence[Served], extra: Sequence[str]) -> Launch:
    """`opencode EXTRA...` with the mesh as a provider, `model` its default."""
    models: dict[str, Any] = {}
    for each in served:
        entry: dict[str, Any] = {"name": each.id}
        if each.context:
            entry["limit"] = {"context": each.context, "output": output_tokens(each.context)}
        models[each.id] = entry
    config = {
        "$schema": "https://opencode.ai/config.json",
        "provider": {
            OPENCODE_PROVIDER: {
                "npm": "@ai-sdk/openai-compatible",
                "name": "mesh-llm",
                "options": {"baseURL": f"{api.base_url}/v1", "apiKey": api.token},
                "models": models,
            }
        },
        "model": f"{OPENCODE_PROVIDER}/{model.id}",
        "small_model": f"{OPENCODE_PROVIDER}/{model.id}",
    }
    env = {"OPENCODE_CONFIG_CONTENT": json.dumps(config, separators=(",", ":"))}
    return Launch("opencode", ["opencode", *extra], env)


Builder = Callable[[Api, Served, Sequence[Served], Sequence[str]], Launch]
HARNESSES: dict[str, Builder] = {"goose": goose, "claude": claude, "opencode": opencode}
