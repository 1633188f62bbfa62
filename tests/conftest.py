"""Shared fixtures: a real berth server in its own process on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = Path(os.environ.get("BERTH_DEMO_DIR", ROOT / "var" / "demo"))


#: set by .ci/run: there a missing test tool (chromium, perf_analyzer) is a failure,
#: not a skip, so a broken install cannot pass CI by skipping the tests that need it
REQUIRE_TOOLS = os.environ.get("REQUIRE_TEST_TOOLS") == "1"


def missing_tool(reason: str) -> None:
    """Skip the calling test module for want of a tool, or fail it under CI."""
    if REQUIRE_TOOLS:
        pytest.fail(f"{reason} (REQUIRE_TEST_TOOLS=1: CI must have it)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def wait_until_ready(process: subprocess.Popen[bytes], url: str, logs: Callable[[], str], timeout: float = 60.0) -> None:
    """Wait for a berth server's ``/health`` to say ready; fail at once, with its log,
    if the process exits first, and with its log after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{logs()}")
        try:
            response = httpx.get(f"{url}/health", timeout=1.0)
            if response.status_code == 200 and response.json().get("ready"):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"server not ready in {timeout}s:\n{logs()}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class BerthServer:
    """``berth serve`` as a subprocess; stopped by its PID with SIGTERM."""

    def __init__(self, config: dict[str, Any], workdir: Path, *, extra_args: list[str] | None = None, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        config = dict(config)
        server = dict(config.get("server", {}))
        server.setdefault("http_port", self.port)
        server.setdefault("grpc_port", free_port())
        self.port = server["http_port"]
        self.grpc_port = server["grpc_port"]
        config["server"] = server
        self.workdir = workdir
        self.config_path = workdir / "berth.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "server.log"
        self.extra_args = extra_args or []
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0, wait_ready: bool = True) -> "BerthServer":
        env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
        env.update(self.env)
        env["PYTHONUNBUFFERED"] = "1"
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "berth", "serve", "--config", str(self.config_path), *self.extra_args],
            cwd=self.workdir,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        assert self.process is not None
        wait_until_ready(self.process, self.url, self.logs, timeout)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kwargs.pop("timeout", 30.0), **kwargs)

    def stop(self, timeout: float = 30.0) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()
        return int(self.process.returncode)


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Any]:
    """Factory: ``make_server(config_dict)`` starts a server; all are stopped at the end."""
    servers: list[BerthServer] = []

    def factory(config: dict[str, Any], **kwargs: Any) -> BerthServer:
        workdir = tmp_path / f"server{len(servers)}"
        workdir.mkdir()
        wait_ready = kwargs.pop("wait_ready", True)
        server = BerthServer(config, workdir, **kwargs)
        servers.append(server)
        return server.start(wait_ready=wait_ready)

    yield factory
    for server in servers:
        server.stop()


#: seconds allowed to the first test that builds the demo in its set-up (a bare GPU
#: machine took 112-127 s for the build alone, past the suite's 120 s per test)
DEMO_BUILD_TIMEOUT_S = 900


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """When the demo is not built yet, the first test that needs it also pays for the
    build: give that one test the build's time on top of its own."""
    from berth.demo.builder import cached_build_info

    if cached_build_info(DEMO_DIR) is not None:
        return
    first = next((item for item in items if "demo_dir" in getattr(item, "fixturenames", ())), None)
    if first is not None:
        first.add_marker(pytest.mark.timeout(DEMO_BUILD_TIMEOUT_S))


@pytest.fixture(scope="session")
def demo_dir() -> Path:
    """The demo repository (built by `make test` first; built here if missing)."""
    from berth.demo import build

    build(DEMO_DIR)
    return DEMO_DIR
