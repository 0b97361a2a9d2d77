"""Steady request load for the fault suite, and what it saw: every request ends ok, failed
cleanly (an error the client can read: OpenAI-shaped JSON, or an SSE `error` event in a
stream), failed dirty (a dropped connection, a stream cut without a word) or hung."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx


@dataclass(frozen=True)
class Outcome:
    started: float
    ended: float
    result: str  # "ok", "clean", "dirty", "hung"
    detail: str = ""
    ttft_s: float | None = None  # streams: until the first content


@dataclass
class Load:
    api: str  # http://HOST:PORT/v1
    model: str
    streams: int = 4
    max_tokens: int = 24
    stream: bool = True
    hang_after_s: float = 60.0
    headers: dict[str, str] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _retry_after: float = 0.0
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Load:
        for index in range(self.streams):
            thread = threading.Thread(target=self._loop, args=(index,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> list[Outcome]:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.hang_after_s + 10)
        return sorted(self.outcomes, key=lambda o: o.started)

    def _loop(self, index: int) -> None:
        with httpx.Client(timeout=httpx.Timeout(self.hang_after_s, connect=5)) as http:
            while not self._stop.is_set():
                started = time.monotonic()
                result, detail, first = self._one(http, index)
                ttft = first - started if first else None
                self.outcomes.append(Outcome(started, time.monotonic(), result, detail, ttft))
                if result != "ok":  # as OpenAI's clients do: honour Retry-After, else back off
                    self._stop.wait(min(self._retry_after, 5.0) if self._retry_after else 1.0)

    def _one(self, http: httpx.Client, index: int) -> tuple[str, str, float]:
        body = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "stream": self.stream,
            "messages": [{"role": "user", "content": f"Count to ten, {index}."}],
        }
        url = f"{self.api}/chat/completions"
        try:
            with http.stream("POST", url, json=body, headers=self.headers) as reply:
                self._retry_after = float(reply.headers.get("retry-after", 0) or 0)
                if reply.status_code != 200:
                    return (*_error_reply(reply), 0.0)
                return _read_answer(reply, self.stream)
        except httpx.TimeoutException:
            return "hung", f"no answer within {self.hang_after_s:.0f}s", 0.0
        except httpx.TransportError as exc:
            return "dirty", f"{type(exc).__name__}: {exc}", 0.0


def _error_reply(reply: httpx.Response) -> tuple[str, str]:
    text = reply.read().decode(errors="replace")
    try:
        error = json.loads(text)["error"]
        return "clean", f"{reply.status_code} {error['code']}: {error['message'][:80]}"
    except (ValueError, KeyError, TypeError):
        return "dirty", f"{reply.status_code} not OpenAI's shape: {text[:80]}"


def _read_answer(reply: httpx.Response, stream: bool) -> tuple[str, str, float]:
    """The result, a detail, and when the first content arrived (0.0: none)."""
    if not stream:
        reply.read()
        choices = reply.json().get("choices")
        return ("ok", "", time.monotonic()) if choices else ("dirty", "no choices", 0.0)
    done, first = False, 0.0
    for line in reply.iter_lines():
        if line.startswith("event: error") or line.startswith('data: {"error"'):
            return "clean", "an SSE error event", first
        if line == "data: [DONE]":
            done = True
        elif not first and '"content":"' in line:
            first = time.monotonic()
    return ("ok", "", first) if done else ("dirty", "the stream ended without [DONE]", first)


def wait_until(check: Callable[[], object], timeout: float, what: str) -> float:
    """Seconds until `check()` is true; a check that raises counts as false (a node being
    broken on purpose answers in many ways)."""
    started = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - started
        except Exception:
            pass
        assert time.monotonic() - started < timeout, f"{what}: not within {timeout:.0f}s"
        time.sleep(0.1)


def recovery_time(
    api: str, model: str, fault_at: float, headers: dict[str, str], timeout: float = 120
) -> float | None:
    """Seconds from the fault until a one-token request succeeds again (probed every 0.2 s
    from now on); None if it does not within `timeout`."""
    body = {"model": model, "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=10) as http:
        while time.monotonic() < deadline:
            try:
                reply = http.post(f"{api}/chat/completions", json=body, headers=headers)
                if reply.status_code == 200:
                    return time.monotonic() - fault_at
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
    return None


def settled_after(outcomes: list[Outcome], fault_at: float) -> float:
    """Seconds from the fault to the end of the last request that failed (0: none did)."""
    ends = [o.ended for o in outcomes if o.ended >= fault_at and o.result != "ok"]
    return max(ends, default=fault_at) - fault_at


@dataclass(frozen=True)
class Verdict:
    """What a fault cost: requests and failures from the fault on, and how long until the
    model answered again."""

    requests: int
    failed: int
    clean: int
    dirty: int
    hung: int
    recovered_s: float | None  # None: no request after the fault succeeded

    def line(self, fault: str) -> str:
        recovered = "never" if self.recovered_s is None else f"{self.recovered_s:.1f} s"
        return (
            f"{fault}: {self.failed} of {self.requests} requests failed "
            f"({self.clean} clean, {self.dirty} dropped, {self.hung} hung); "
            f"recovered in {recovered}"
        )


def judge(outcomes: list[Outcome], fault_at: float, recovered_s: float | None) -> Verdict:
    """Requests in flight at the fault or started after it, by how they ended."""
    affected = [o for o in outcomes if o.ended >= fault_at]
    failures = [o for o in affected if o.result != "ok"]
    count = {
        kind: sum(1 for o in failures if o.result == kind) for kind in ("clean", "dirty", "hung")
    }
    return Verdict(
        len(affected), len(failures), count["clean"], count["dirty"], count["hung"], recovered_s
    )
