"""Home, About and Models in a real browser; content negotiation at ``/``; the
admin token; server data rendered as text (a ``<script>`` in a session stays text)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from conftest import BerthServer
from ui_fixtures import ADMIN_TOKEN, browser, open_page, page, start_ui_server  # noqa: F401  (browser and page are fixtures)

PWN = "<script>window.__pwned=1</script>"
PWN_IMG = '<img src=x onerror="window.__pwned=2">'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    instance = start_ui_server(tmp_path_factory.mktemp("ui-pages"))
    yield instance
    instance.stop()



def test_root_negotiates_html_for_browsers_and_json_for_the_rest(server: BerthServer) -> None:
    plain = httpx.get(f"{server.url}/")
    assert plain.status_code == 200 and plain.headers["content-type"] == "application/json"
    assert plain.json()["name"] == "berth" and "Accept" in plain.headers["vary"]
    html = httpx.get(f"{server.url}/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in html.headers["content-security-policy"]
    for path in ("/ui/", "/ui/about", "/ui/test", "/ui/stream", "/ui/models"):
        response = httpx.get(f"{server.url}{path}")
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/html"), path
        assert "http://" not in response.text and "https://" not in response.text, path     # no CDN
        assert "<script>" not in response.text and "innerHTML" not in response.text, path   # no inline script
    assert httpx.get(f"{server.url}/ui/nope").status_code == 404
    assert httpx.get(f"{server.url}/ui").status_code == 308
    vendor = httpx.get(f"{server.url}/static/vendor/uplot/uPlot.iife.min.js")
    assert vendor.status_code == 200 and "uPlot" in vendor.text
    assert "MIT" in httpx.get(f"{server.url}/static/vendor/uplot/LICENSE").text
    scripts = Path(__file__).resolve().parents[2] / "src" / "berth" / "web" / "static"
    for script in scripts.glob("*.js"):
        assert ".innerHTML" not in script.read_text() and "insertAdjacentHTML" not in script.read_text(), script.name


def test_home_and_about_show_what_is_loaded(page: Any, server: BerthServer) -> None:
    page.goto(f"{server.url}/")
    page.wait_for_selector("#loaded tbody tr td strong")
    assert page.locator("#loaded tbody td strong").all_text_contents() == ["lin"]
    assert page.text_content("#s-default") == "lin"
    page.wait_for_selector("#health-pill.ok")
    assert "1 loaded" in page.text_content("#health-pill")
    assert page.get_attribute(".nav a[href='/ui/']", "aria-current") == "page"
    page.click(".nav a[href='/ui/about']")
    page.wait_for_selector("#loaded tbody tr td strong")
    assert "berth is a Python multi-model inference server" in page.text_content("main")
    page.wait_for_function("() => document.getElementById('s-capacity').textContent.includes('/ 64 models')")
    assert page.text_content("#s-policy") == "lru"


def _row(page: Any, model: str) -> Any:
    return page.locator(f"#models tbody tr[data-model='{model}']")


def test_models_page_loads_unloads_pins_with_the_admin_token(page: Any, server: BerthServer) -> None:
    page.goto(f"{server.url}/ui/models")
    page.wait_for_selector("#models tbody tr[data-model=lin2]")
    page.uncheck("#auto")
    assert _row(page, "lin2").locator(".badge").first.text_content() == "UNLOADED"
    assert page.text_content("#c-models") == "1 / 64"

    # the server has an admin token: without it the load is refused, and the page says so
    _row(page, "lin2").locator("button[data-action=load]").click()
    page.wait_for_selector("#models-msg.error")
    assert "401" in page.text_content("#models-msg") and "admin token" in page.text_content("#models-msg")

    page.fill("#token", ADMIN_TOKEN)
    page.click("#token-save")
    assert page.evaluate("sessionStorage.getItem('berth.adminToken')") == ADMIN_TOKEN
    _row(page, "lin2").locator("button[data-action=load]").click()
    page.wait_for_function("() => document.querySelector(\"#models tr[data-model=lin2] .badge\").textContent === 'READY'")
    assert "load lin2: READY" in page.text_content("#models-msg")
    assert page.text_content("#c-models") == "2 / 64"
    assert _row(page, "lin2").locator("td").nth(2).text_content() == "cpu"

    _row(page, "lin2").locator("button[data-action=pin]").click()
    page.wait_for_selector("#models tr[data-model=lin2] .badge.pinned")
    _row(page, "lin2").locator("button[data-action=pin]").click()   # unpin
    page.wait_for_selector("#models tr[data-model=lin2] .badge.pinned", state="detached")

    _row(page, "lin2").locator("button[data-action=unload]").click()
    page.wait_for_function("() => document.querySelector(\"#models tr[data-model=lin2] .badge\").textContent === 'UNLOADED'")
    assert page.text_content("#c-models") == "1 / 64"

    # a model that fails to load: the error and the reason are shown in its row
    _row(page, "broken").locator("button[data-action=load]").click()
    page.wait_for_selector("#models-msg.error")
    assert "load broken failed" in page.text_content("#models-msg")
    page.wait_for_function("() => document.querySelector(\"#models tr[data-model=broken] .badge\").textContent === 'FAILED'")
    assert "broken on purpose" in _row(page, "broken").text_content()

    # the token lives in this tab only
    page.click("#token-clear")
    assert page.evaluate("sessionStorage.getItem('berth.adminToken')") is None


def test_server_data_is_rendered_as_text(page: Any, server: BerthServer, tmp_path: Path) -> None:
    session = {
        "id": "sess_" + PWN, "started_at": "2025-10-08T12:00:00.000Z", "model": PWN, "gpu": False, "input": [4],
        "results": [{"req_id": 0, "mode": PWN_IMG, "started_at": "x", "finished_at": "y", "client_ms": 1.0, "server_ms": 0.5,
                     "queue_ms": 0.1, "top_index": 0, "top_score": 0.9, "probs": [0.9, 0.05, 0.05]}],
        "stopped_at": "2025-10-08T12:01:00.000Z",
    }
    page.goto(f"{server.url}/ui/test")
    page.evaluate("session => localStorage.setItem('berth.sessions', JSON.stringify([session]))", session)
    page.reload()
    row = page.locator("#sessions tbody tr").first
    assert row.locator("td").nth(1).text_content() == PWN
    # save it on the server, then view it
    row.locator("button", has_text="Save").click()
    page.wait_for_selector("#session-msg.ok")
    saved = re.search(r"saved on the server: (\S+)", page.text_content("#session-msg"))
    assert saved
    assert json.loads((server.workdir / saved.group(1)).read_text())["model"] == PWN
    row.locator("button", has_text="View").click()
    assert page.locator("#sv-fields dd").first.text_content() == PWN
    assert PWN in page.text_content("#sv-json") and PWN_IMG.replace('"', '\\"') in page.text_content("#sv-json")
    assert page.locator("#session-view script, #session-view img, #sessions script").count() == 0
    # the same through the file import
    imported = tmp_path / "session.json"
    imported.write_text(json.dumps({**session, "id": "imported", "model": PWN_IMG}))
    page.set_input_files("#import-file", str(imported))
    page.wait_for_selector("#session-msg.ok")
    assert page.locator("#sv-fields dd").first.text_content() == PWN_IMG
    page.wait_for_timeout(300)
    assert page.evaluate("window.__pwned") is None


def test_pages_fit_a_phone(browser: Any, server: BerthServer, tmp_path: Path) -> None:
    for page, _probe in open_page(browser, server, tmp_path, is_mobile=True, has_touch=True):
        page.set_viewport_size({"width": 390, "height": 844})
        for path in ("/ui/", "/ui/test", "/ui/stream", "/ui/models"):
            page.goto(f"{server.url}{path}")
            page.wait_for_selector("#health-pill.ok")
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 1, (path, overflow)      # wide tables scroll inside their own box
