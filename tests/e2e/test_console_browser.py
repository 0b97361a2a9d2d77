"""The console in a real browser (headless Chromium) against a real `mesh-llm serve`: the node
and its model appear; a model asked for from the page appears and turns from loading to
serving without a reload; the chat streams an answer from a real model with its tokens/s;
losing the node's events shows "reconnecting". Screenshots of the main views go to
docs/console/ (written only when MESH_CONSOLE_SCREENSHOTS is set, so a test run leaves the
tree alone)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import ServeProcess, local_serve

pytestmark = pytest.mark.e2e
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"


@pytest.fixture(scope="module")
def serve(chat_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    running = local_serve(tmp_path_factory.mktemp("console"), chat_model, threads=1)
    try:
        running.wait_event("model_ready")
        yield running
    finally:
        running.stop()


def shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    if os.environ.get("MESH_CONSOLE_SCREENSHOTS"):
        SHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_the_console_shows_the_mesh_live_and_chats(
    browser, serve: ServeProcess, chat_model: Path, tiny_model: Path
) -> None:  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport={"width": 1280, "height": 860})
    page.goto(serve.console)
    page.wait_for_selector("#live[data-state=live]", timeout=20000)
    node = page.locator("#nodes .node").first
    assert "serving" in node.inner_text() and chat_model.stem in node.inner_text()
    assert page.locator("#topology g[data-node]").count() == 1
    shot(page, "overview")

    # a model asked for from the page shows up, then serves: no reload in between
    page.click("nav button[data-view=models]")
    page.fill("#ask-model", str(tiny_model))
    page.click("#ask button[type=submit]")
    page.wait_for_selector("#ask-result:has-text('requested')", timeout=30000)
    row = page.locator(f"#model-rows tr[data-model='{tiny_model.stem}']")
    row.wait_for(timeout=30000)
    row.locator(".state.serving").wait_for(timeout=120000)
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
    shot(page, "models")

    page.click("nav button[data-view=chat]")
    page.select_option("#chat-model", chat_model.stem)
    page.fill("#prompt", "What is the capital of France? Answer in one word.")
    page.click("#send")
    page.wait_for_function(
        "document.querySelector('#send').disabled === false && "
        "document.querySelectorAll('.msg.assistant').length === 1",
        timeout=120000,
    )
    answer = page.locator(".msg.assistant").inner_text()
    assert answer.strip(), "the chat got no answer"
    assert "tokens/s" in page.inner_text("#tps")
    shot(page, "chat")

    page.click("nav button[data-view=invite]")
    page.wait_for_selector("#invite-body code", timeout=10000)
    assert "mesh-llm serve --join mesh1." in page.inner_text("#invite-body")
    shot(page, "invite")
    page.close()


def test_the_page_says_when_it_lost_the_node_and_comes_back(
    browser, tiny_model: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    node = local_serve(tmp_path / "a", tiny_model)
    page = browser.new_page()
    try:
        node.wait_event("model_ready")
        page.goto(node.console)
        page.wait_for_selector("#live[data-state=live]", timeout=20000)
        node.stop()
        page.wait_for_selector("#live[data-state=reconnecting]", timeout=20000)
        assert page.locator("#nodes .node").count() == 1  # what it showed stays
        node.start()  # the same command, the same ports: the page finds it again by itself
        node.wait_event("model_ready")
        page.wait_for_selector("#live[data-state=live]", timeout=30000)
        page.locator("#nodes .state.serving").first.wait_for(timeout=30000)
    finally:
        page.close()
        node.stop()


def test_headless_serves_the_console_api_without_the_page(tiny_model: Path, tmp_path: Path) -> None:
    import httpx

    node = local_serve(tmp_path / "a", tiny_model, extra=("--headless",))
    try:
        node.wait_event("model_ready")
        assert httpx.get(f"{node.console}/api/status", timeout=10).json()["models"]
        page = httpx.get(f"{node.console}/", timeout=10)
        assert page.status_code == 404 and page.json()["error"]["message"]
        assert httpx.get(f"{node.console}/static/console.js", timeout=10).status_code == 404
    finally:
        node.stop()
