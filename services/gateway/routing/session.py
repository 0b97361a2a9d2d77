"""The session key a request routes by, so one conversation keeps landing on the replica
that holds its KV cache: the client's `X-Session-Id` header, else the request's `user`
field, else a hash of how the conversation starts (what every later turn repeats: the system
prompt and the first user message; for a completion, the start of the prompt). Embeddings
have no session."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

PROMPT_PREFIX_CHARS = 1024  # a completion's session: the first characters of its prompt


def session_key(route: str, payload: Mapping[str, Any], headers: Mapping[str, str]) -> str:
    given = headers.get("x-session-id", "").strip()
    if given:
        return "id:" + given[:256]
    user = payload.get("user")
    if isinstance(user, str) and user:
        return "user:" + user[:256]
    opening = conversation_opening(route, payload)
    if opening is None:
        return ""
    text = json.dumps(opening, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "start:" + hashlib.blake2b(text.encode(errors="replace"), digest_size=12).hexdigest()


def conversation_opening(route: str, payload: Mapping[str, Any]) -> object | None:
    """What every turn of this request's conversation starts with, or None."""
    if route == "/v1/embeddings":
        return None
    if route in ("/v1/chat/completions", "/v1/messages"):
        messages = payload.get("messages")
        if not isinstance(messages, list):
            return None
        return [payload.get("system"), *_through_first_user(messages)]
    if route == "/v1/responses":
        given = payload.get("input")
        opening = _through_first_user(given) if isinstance(given, list) else given
        return [payload.get("instructions"), opening]
    prompt = payload.get("prompt")
    return prompt[:PROMPT_PREFIX_CHARS] if isinstance(prompt, str | list) else None


def _through_first_user(messages: list[Any]) -> list[Any]:
    for index, message in enumerate(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return messages[: index + 1]
    return messages[:1]
