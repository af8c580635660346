"""The Dagster UI shows what a run produced: a real dagster-webserver on a finished run's
instance, driven in headless Chromium (Debian's package, through Playwright's `executable_path`:
no browser download). Screenshots go to `artifacts/`."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import demo_task
from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = REPO_ROOT / "artifacts"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def webserver(make_project):
    project = make_project(
        [demo_task(1, duration=1), demo_task(2, duration=2), demo_task(3, deps=[1, 2])]
    )
    result = project.execute()
    assert result.returncode == 0, result.stderr[-2000:]
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dagster_webserver",
            "-m",
            "cto_dagster.definitions",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        env=project.env(),
        cwd=project.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/server_info", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "dagster-webserver did not answer in 120 s"
            assert server.poll() is None, "dagster-webserver exited"
            time.sleep(0.5)
        yield base
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the webserver and the code server it started
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_asset_graph_and_metrics_chart_are_shown(webserver):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(60_000)

        page.goto(f"{webserver}/asset-groups/proj")
        for name in ("task_1", "task_2", "task_3", "integration_level_0", "run_metrics"):
            page.get_by_text(name, exact=True).first.wait_for()
        page.screenshot(path=str(ARTIFACTS / "ui-asset-graph.png"))

        page.goto(f"{webserver}/assets/proj/run_metrics")
        page.get_by_text("actual_speedup", exact=True).first.wait_for()
        row = page.locator("tr", has_text="gantt_chart")
        row.get_by_text("[Show Markdown]").click()
        chart = page.get_by_role("img", name="Gantt chart of the run")
        chart.wait_for()
        width = chart.evaluate("image => image.naturalWidth")
        assert width >= 800, "the chart image did not load"
        page.screenshot(path=str(ARTIFACTS / "ui-metrics-chart.png"))
        browser.close()
