"""The Load test page in a real browser: a client-side run, a server-side burst,
sessions exported as JSON and CSV (seed 000's fields) and saved on the server."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import BerthServer
from ui_fixtures import PageProbe, browser, open_page, page, start_ui_server  # noqa: F401  (browser and page are fixtures)

SEED_RESULT_FIELDS = ["req_id", "mode", "started_at", "finished_at", "client_ms", "server_ms", "queue_ms", "top_index", "top_score", "probs"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    instance = start_ui_server(tmp_path_factory.mktemp("ui-loadtest"))
    yield instance
    instance.stop()



def _ms(text: str) -> float:
    match = re.match(r"([0-9.]+) ms", text)
    assert match, text
    return float(match.group(1))


def _run(page: Any) -> None:
    page.evaluate("delete document.body.dataset.runState")
    page.click("#run")
    page.wait_for_selector("body[data-run-state=done]", timeout=60_000)


def test_client_side_run_sessions_export_and_save(page: Any, server: BerthServer, tmp_path: Path) -> None:
    page.goto(f"{server.url}/ui/test")
    page.wait_for_selector("#model option[value=lin]", state="attached")
    page.select_option("#model", "lin")
    page.click("#session-start")
    page.fill("#n", "50")
    page.fill("#parallel", "8")
    _run(page)

    assert page.text_content("#m-done") == "50 / 50"
    assert page.text_content("#m-errors") == "0"
    p50, p90, p99 = (_ms(page.text_content(f"#m-{p}")) for p in ("p50", "p90", "p99"))
    assert 0 < p50 <= p90 <= p99
    assert _ms(page.text_content("#m-total")) > 0
    assert "done: 50 requests" in page.text_content("#run-msg")
    rows = page.locator("#results tbody tr")
    assert rows.count() == 50
    first = rows.nth(0).locator("td")
    assert first.nth(1).text_content() == "client"
    assert re.fullmatch(r"#[0-2]", first.nth(2).text_content())           # lin has 3 classes, no labels
    assert 0 < float(first.nth(3).text_content()) <= 1
    rows.nth(0).locator("button", has_text="View").click()
    output = page.text_content("#output-view")
    assert output.startswith("request ") and "· lin · top" in output and output.count(",") >= 2   # the 3 probabilities
    assert page.locator("#latency-chart canvas").count() == 1                # uPlot drew

    # a server-side burst joins the same session
    page.check("input[name=mode][value=server]")
    page.fill("#n", "20")
    page.select_option("#input-kind", "random")
    _run(page)
    assert page.text_content("#m-done") == "20 / 20"
    assert "server-side burst of 20" in page.text_content("#run-msg")
    assert "70 results" in page.text_content("#session-status")

    # the session survives a reload (localStorage), then stops
    page.reload()
    page.wait_for_selector("#sessions tbody tr")
    assert "70 results" in page.text_content("#session-status")
    page.click("#session-stop")

    with page.expect_download() as download_info:
        page.click("#export-json")
    download = download_info.value
    assert download.suggested_filename.startswith("sess_") and download.suggested_filename.endswith(".json")
    session = json.loads(Path(download.path()).read_text())
    assert set(session) == {"id", "started_at", "model", "gpu", "input", "results", "stopped_at"}
    assert re.fullmatch(r"sess_\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ", session["id"])
    assert session["model"] == "lin" and session["input"] == [4] and session["gpu"] is False and session["stopped_at"]
    results = session["results"]
    assert len(results) == 70 and [r["req_id"] for r in results] == list(range(70))
    assert [r["mode"] for r in results].count("client") == 50 and [r["mode"] for r in results].count("server") == 20
    for result in results:
        assert set(result) == set(SEED_RESULT_FIELDS)
        assert len(result["probs"]) == 3 and abs(sum(result["probs"]) - 1) < 1e-4
        assert result["top_index"] == max(range(3), key=lambda i: result["probs"][i])
        assert result["server_ms"] > 0 and 0 <= result["queue_ms"] <= result["server_ms"]
        assert (result["client_ms"] > 0) if result["mode"] == "client" else result["client_ms"] is None

    with page.expect_download() as download_info:
        page.click("#export-csv")
    rows_csv = list(csv.DictReader(Path(download_info.value.path()).read_text().splitlines()))
    assert len(rows_csv) == 70 and list(rows_csv[0]) == SEED_RESULT_FIELDS
    assert rows_csv[0]["mode"] == "client" and float(rows_csv[0]["client_ms"]) > 0
    assert [float(v) for v in rows_csv[0]["probs"].split()] == pytest.approx(results[0]["probs"], rel=1e-6)
    assert rows_csv[-1]["mode"] == "server" and rows_csv[-1]["client_ms"] == ""

    page.click("#save-server")
    page.wait_for_selector("#session-msg.ok")
    message = page.text_content("#session-msg")
    saved_path = re.search(r"saved on the server: (\S+) \((\d+) bytes\)", message)
    assert saved_path, message
    on_disk = server.workdir / saved_path.group(1)                            # sessions_dir is relative to the config folder
    assert on_disk.is_file() and on_disk.stat().st_size == int(saved_path.group(2))
    assert on_disk.parent == server.workdir / "data" / "sessions"
    assert json.loads(on_disk.read_text())["id"] == session["id"]


def test_errors_are_shown_in_place(page: Any, server: BerthServer) -> None:
    page.goto(f"{server.url}/ui/test")
    page.wait_for_selector("#model option[value=broken]", state="attached")
    page.select_option("#model", "broken")
    page.fill("#n", "3")
    _run(page)
    error = page.text_content("#run-msg")
    assert "broken" in error and "could not run" in error and "503" in error


def test_server_down_is_shown(browser: Any, tmp_path: Path) -> None:
    server = start_ui_server(tmp_path / "down")
    try:
        for page, _probe in open_page(browser, server, tmp_path):
            page.goto(f"{server.url}/ui/test")
            page.wait_for_selector("#health-pill.ok")
            server.stop()
            page.wait_for_selector("#health-pill.bad", timeout=10_000)
            assert page.text_content("#health-pill") == "server unreachable"
            assert "server unreachable" in page.text_content("#run-msg")
    finally:
        server.stop()
