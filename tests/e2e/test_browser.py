"""The API's origin rules in a real browser (headless Chromium): the console works from its
own origin, a page from another origin can neither read the API nor make it generate, and an
origin the operator allowed can."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from harness import ServeProcess, local_serve

from meshllm.core.ports import free_port

pytestmark = pytest.mark.e2e
KEY = "sk-browser-test"


class Pages:
    """A plain web server for a test page, on its own origin."""

    def __init__(self) -> None:
        self.port = free_port()
        handler = http.server.SimpleHTTPRequestHandler
        handler.log_message = lambda *args: None  # type: ignore[method-assign]
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture(scope="module")
def pages() -> Iterator[Pages]:
    served = Pages()
    yield served
    served.close()


@pytest.fixture(scope="module")
def serve(
    tiny_model: Path, pages: Pages, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeProcess]:
    extra = ("--api-key", KEY, "--cors-origin", pages.origin)
    running = local_serve(tmp_path_factory.mktemp("browser"), tiny_model, extra=extra)
    running.api_key = KEY
    try:
        running.wait_event("model_ready")
        yield running
    finally:
        running.stop()


def chat_requests(serve: ServeProcess) -> float:
    metrics = httpx.get(f"{serve.api.removesuffix('/v1')}/metrics", headers=serve.headers).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("meshllm_requests_total{") and "chat/completions" in line
    )


def test_the_console_works_from_its_own_origin(
    browser, serve: ServeProcess, tiny_model: Path
) -> None:  # type: ignore[no-untyped-def]
    page = browser.new_page()
    page.goto(serve.console)
    assert "Mesh LLM" in page.title()
    # the API has keys, so the console's API has too: the page asks for one
    page.wait_for_selector("#keybar:not([hidden])", timeout=20000)
    page.fill("#key", KEY)
    page.click("#usekey")
    page.wait_for_selector(f"text={tiny_model.stem}", timeout=20000)
    assert page.text_content("#live") == "live"
    page.close()


SCRIPT = """async ([api, key]) => {
  const out = {};
  try { const r = await fetch(api + '/models', {headers: {authorization: 'Bearer ' + key}});
        out.models = r.status + ' ' + (await r.json()).data.length; }
  catch (e) { out.models = 'blocked'; }
  try { await fetch(api + '/chat/completions', {method: 'POST', mode: 'no-cors',
          headers: {'content-type': 'text/plain'},
          body: JSON.stringify({model: 'MODEL', max_tokens: 4,
                                messages: [{role: 'user', content: 'hi'}]})});
        out.sent = 'sent'; }
  catch (e) { out.sent = 'blocked'; }
  return out;
}"""


def visit(browser, pages: Pages, origin_host: str, serve: ServeProcess, model: str) -> dict:  # type: ignore[no-untyped-def]
    page = browser.new_page()
    page.goto(f"http://{origin_host}:{pages.port}/")
    result = page.evaluate(SCRIPT.replace("MODEL", model), [serve.api, KEY])
    page.close()
    return result


def test_another_origin_can_neither_read_nor_make_it_generate(
    browser, serve: ServeProcess, pages: Pages, tiny_model: Path
) -> None:  # type: ignore[no-untyped-def]
    before = chat_requests(serve)
    # "localhost" is another origin than the allowed "127.0.0.1", on the same machine
    seen = visit(browser, pages, "localhost", serve, tiny_model.stem)
    assert seen["models"] == "blocked"
    assert seen["sent"] == "sent"  # a no-cors POST leaves the page; the gateway refuses it
    after = chat_requests(serve)
    assert after == before, "a cross-site page made the mesh generate"


def test_an_allowed_origin_reads_the_api(
    browser, serve: ServeProcess, pages: Pages, tiny_model: Path
) -> None:  # type: ignore[no-untyped-def]
    seen = visit(browser, pages, "127.0.0.1", serve, tiny_model.stem)
    assert seen["models"] == "200 1"
