"""The Stream page (seed 001's dashboard) in a real browser on the demo EMG model."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import BerthServer
from ui_fixtures import browser, page, start_ui_server  # noqa: F401  (browser and page are fixtures)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, demo_dir: Path) -> Iterator[BerthServer]:
    instance = start_ui_server(tmp_path_factory.mktemp("ui-stream"), demo_dir)
    yield instance
    instance.stop()



def test_a_two_second_stream_shows_events(page: Any, server: BerthServer) -> None:
    page.goto(f"{server.url}/ui/stream")
    page.wait_for_selector("#model option[value=emg]", state="attached")
    page.select_option("#model", "emg")
    page.fill("#fps", "30")
    page.fill("#duration", "2")
    page.click("#start")
    page.wait_for_selector("body[data-stream-state=streaming]")
    page.wait_for_function("() => Number(document.getElementById('m-frames').textContent) >= 5")
    assert page.is_disabled("#start") and page.is_enabled("#stop")
    assert page.text_content("#prediction") not in ("", "–") and page.text_content("#confidence").endswith(" %")
    page.wait_for_selector("body[data-stream-state=stopped]", timeout=15_000)
    frames = int(page.text_content("#m-frames"))
    assert 40 <= frames <= 62
    assert page.text_content("#stream-msg").startswith(f"completed: {frames} frames")
    assert page.text_content("#m-model") == "emg" and page.text_content("#m-backend").startswith("onnxruntime")
    assert float(page.text_content("#m-fps")) > 10
    assert page.text_content("#m-mean").endswith(" ms") and page.text_content("#m-p99").endswith(" ms")
    assert page.locator("#distribution .dist-row").count() >= 1
    assert "frame 0:" in page.text_content("#log") and "completed" in page.text_content("#log")
    assert page.locator("#latency-chart canvas").count() == 1


def test_stop_ends_an_open_stream_and_bad_parameters_are_shown(page: Any, server: BerthServer) -> None:
    page.goto(f"{server.url}/ui/stream")
    page.wait_for_selector("#model option[value=emg]", state="attached")
    page.fill("#duration", "")                         # until stopped
    page.click("#start")
    page.wait_for_function("() => Number(document.getElementById('m-frames').textContent) >= 3")
    page.click("#stop")
    page.wait_for_selector("body[data-stream-state=stopped]")
    assert page.text_content("#stream-msg").startswith("stopped after")
    page.fill("#fps", "5000")                          # over emg.max_fps
    page.click("#start")
    page.wait_for_selector("body[data-stream-state=error]")
    assert page.text_content("#stream-msg").startswith("400: ")
    page.fill("#fps", "30")
    page.select_option("#model", "broken")             # a model that fails to load
    page.click("#start")
    page.wait_for_selector("body[data-stream-state=error]")
    assert "broken" in page.text_content("#stream-msg")
