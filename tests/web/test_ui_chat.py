"""The Chat page in a real browser on the demo's tiny llama: a streamed answer with
TTFT and tokens/s under it, and a follow-up that sends the whole conversation."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import BerthServer
from ui_fixtures import browser, page  # noqa: F401  (browser and page are fixtures)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "llm"))
from llm_fixtures import LLAMA, lm_server  # noqa: E402

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, demo_dir: Path) -> Iterator[BerthServer]:
    instance = lm_server(tmp_path_factory.mktemp("ui-chat") / "server", demo_dir)
    yield instance
    instance.stop()



def test_chat_streams_an_answer_with_timings_and_keeps_the_conversation(page: Any, server: BerthServer, tmp_path: Path) -> None:
    requests: list[Any] = []
    page.on("request", lambda request: requests.append(request) if request.url.endswith("/v1/chat/completions") else None)
    page.goto(f"{server.url}/ui/chat")
    assert page.get_attribute(".nav a[href='/ui/chat']", "aria-current") == "page"
    page.wait_for_selector(f"#model option[value={LLAMA}]", state="attached")
    page.select_option("#model", LLAMA)
    page.fill("#max-tokens", "24")
    page.fill("#prompt", "Hello")
    page.click("#send")
    page.wait_for_selector("body[data-chat-state=done]", timeout=60_000)
    answers = page.locator(".turn.assistant")
    assert answers.count() == 1
    assert answers.nth(0).locator(".text").text_content().strip() != ""
    page.wait_for_function("() => /\\d/.test(document.querySelector('.turn.assistant .ttft').textContent)")
    ttft = answers.nth(0).locator(".ttft").text_content()
    tps = answers.nth(0).locator(".tps").text_content()
    assert ttft.endswith(" ms") and float(ttft.split()[0]) > 0, ttft
    assert float(tps) > 0, tps
    assert "server-measured" in answers.nth(0).locator(".source").text_content()
    page.screenshot(path=str(tmp_path / "chat-first.png"), full_page=True)
    first = requests[0].post_data_json
    assert first["stream"] is True and first["stream_options"] == {"include_usage": True}
    assert first["messages"] == [{"role": "user", "content": "Hello"}]

    page.fill("#prompt", "And then?")
    page.click("#send")
    page.wait_for_function("() => document.querySelectorAll('.turn.assistant[data-outcome=done]').length === 2", timeout=60_000)
    assert page.locator(".turn.user .text").all_text_contents() == ["Hello", "And then?"]
    second = requests[1].post_data_json["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "user"]
    assert second[1]["content"] == answers.nth(0).locator(".text").text_content()
    assert answers.nth(1).locator(".text").text_content().strip() != ""
    assert page.evaluate("() => window.berthChat.messages().length") == 4
