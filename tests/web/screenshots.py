"""Screenshots of the web UI over the demo repository, for the README: docs/ui-*.png.

    .venv/bin/python tests/web/screenshots.py [--out docs]

Starts ``berth serve`` on the demo's ``berth.yaml`` (a free port, the demo repository),
drives every page in headless chromium and writes one PNG per page. Not a test.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import httpx
import yaml

TESTS = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(TESTS), str(TESTS / "web")]

from conftest import DEMO_DIR, ROOT, BerthServer  # noqa: E402
from ui_fixtures import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

from playwright.sync_api import sync_playwright  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((DEMO_DIR / "berth.yaml").read_text())
    config["repository"] = str(DEMO_DIR / "models")
    config["server"] = {k: v for k, v in config.get("server", {}).items() if k not in ("http_port", "grpc_port")}
    with tempfile.TemporaryDirectory() as work:
        server = BerthServer(config, Path(work)).start()
        try:
            # some history for the Models page: use the lip-sync tenants so the LRU policy evicts
            with httpx.Client(base_url=server.url, timeout=120) as client:
                for tenant in ("sanders", "bob"):
                    client.post(f"/models/{tenant}/load")
                client.post("/infer/tensorrt", json={"batch": 1, "channels": 16, "length": 200})  # emg is not the LRU one
                client.post("/models/jane/load")       # evicts sanders
            shoot(server, args.out)
        finally:
            server.stop()


def shoot(server: BerthServer, out: Path) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 860})

        def save(name: str, full: bool = False) -> None:
            page.screenshot(path=str(out / f"ui-{name}.png"), full_page=full)
            print(out / f"ui-{name}.png")

        page.goto(f"{server.url}/")
        page.wait_for_selector("#loaded tbody tr td strong")
        page.wait_for_selector("#health-pill.ok")
        save("home")
        page.goto(f"{server.url}/ui/about")
        page.wait_for_selector("#loaded tbody tr td strong")
        page.wait_for_selector("#health-pill.ok")
        save("about")

        page.goto(f"{server.url}/ui/test")
        page.wait_for_selector("#model option[value=digits]", state="attached")
        page.select_option("#model", "digits")
        page.select_option("#input-kind", "random")
        page.click("#session-start")
        page.fill("#n", "500")
        page.fill("#parallel", "8")
        page.click("#run")
        page.wait_for_selector("body[data-run-state=done]", timeout=120_000)
        page.wait_for_timeout(1200)
        page.locator("#results tbody tr").first.locator("button").click()
        page.evaluate("window.scrollTo(0, 0)")
        save("loadtest", full=True)

        page.goto(f"{server.url}/ui/stream")
        page.wait_for_selector("#model option[value=emg]", state="attached")
        page.fill("#duration", "8")
        page.click("#start")
        page.wait_for_timeout(4500)
        save("stream")
        page.click("#stop")

        page.goto(f"{server.url}/ui/models")
        page.wait_for_selector("#models tbody tr")
        page.wait_for_timeout(500)
        save("models", full=True)

        phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, device_scale_factor=1)
        phone.goto(f"{server.url}/ui/test")
        phone.wait_for_selector("#health-pill.ok")
        phone.screenshot(path=str(out / "ui-phone.png"))
        print(out / "ui-phone.png")
        browser.close()


if __name__ == "__main__":
    main()
