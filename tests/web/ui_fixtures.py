"""A berth server and a real browser (Playwright driving Debian's chromium) for the UI tests.

(Imported by name, like ``stream_fixtures``: a ``conftest.py`` here would clash with the
top-level one.) The browser is ``/usr/bin/chromium`` (``apt-get install chromium``);
Playwright's own browser download is not used. Every request the page makes to a
host other than the server is refused and recorded, so the tests also prove that the
UI works with no network (no CDN).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import BerthServer, missing_tool
from models import write_linear_softmax, write_python_model

CHROMIUM = os.environ.get("UI_TEST_CHROMIUM", "/usr/bin/chromium")  # not BERTH_*: those are config keys
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
ADMIN_TOKEN = "ui-admin-secret"

try:
    import playwright.sync_api as playwright_api
except ImportError:
    missing_tool("playwright is not installed")
if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
    missing_tool(f"no chromium at {CHROMIUM} (Debian's chromium package)")


def ui_repository(root: Path) -> Path:
    """``lin`` (x [N,4] → 3 probabilities, preloaded default), ``lin2`` (not loaded) and
    ``broken`` (a Python model whose load fails)."""
    models = root / "models"
    write_linear_softmax(models / "lin" / "1" / "model.onnx", seed=1)
    write_linear_softmax(models / "lin2" / "1" / "model.onnx", seed=2)
    write_python_model(models / "broken", fail_load=True)
    return models


def start_ui_server(workdir: Path, demo_dir: Path | None = None, extra: dict[str, Any] | None = None) -> BerthServer:
    workdir.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "repository": str(ui_repository(workdir / "repo")),
        "default_model": "lin",
        "models": {"lin": {"preload": True}},
        "auth": {"admin_token": ADMIN_TOKEN},
    }
    if demo_dir is not None:
        config["models"]["emg"] = {"model_path": str(demo_dir / "models" / "emg" / "1" / "model.onnx"), "preload": True}
    config.update(extra or {})
    (workdir / "server").mkdir(exist_ok=True)
    return BerthServer(config, workdir / "server").start()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Any, server: BerthServer, tmp_path: Path) -> Iterator[Any]:
    """A fresh page on the module's ``server`` fixture, checked as :func:`open_page` does."""
    for opened, _probe in open_page(browser, server, tmp_path):
        yield opened


class PageProbe:
    """What a page did that it should not have: script errors, requests off the server."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.foreign: list[str] = []


def open_page(browser: Any, server: BerthServer, tmp_path: Path, **context_args: Any) -> Iterator[tuple[Any, PageProbe]]:
    """A fresh browser context and page on ``server``; a screenshot at the end goes to
    ``tmp_path/screenshot.png`` (the test's own folder), and the page must have raised no
    script error and asked for nothing off the server."""
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900}, **context_args)
    probe = PageProbe()

    def route(route: Any) -> None:
        if route.request.url.startswith(server.url) or route.request.url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            probe.foreign.append(route.request.url)
            route.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.on("pageerror", lambda error: probe.errors.append(str(error)))
    try:
        yield page, probe
    finally:
        try:
            page.screenshot(path=str(tmp_path / "screenshot.png"), full_page=True)
        finally:
            context.close()
    assert not probe.errors, probe.errors
    assert not probe.foreign, probe.foreign
