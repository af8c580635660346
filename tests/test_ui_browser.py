"""The Dagster UI, driven in headless Chromium (Debian's package, through Playwright's
`executable_path`: no browser download), on real servers started as users start them.

- A run launched from the command line fails; "Re-execute from failure" clicked in the UI
  completes it: command-line runs are runs of the code location.
- The guide project's and a 100-task project's asset graphs, the catalog, the launchpad and the
  metrics: screenshots go to `artifacts/ui/` (named in the README).
"""

import json
import re
import shutil
import time

import pytest

from tests.conftest import demo_task
from tests.dagster_ui import Server
from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = REPO_ROOT / "artifacts" / "ui"
HUNDRED_TASKS = REPO_ROOT / "tests" / "fixtures" / "projects" / "hundred_tasks.json"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)"
)


def open_browser(driver):
    browser = driver.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.set_default_timeout(60_000)
    return browser, page


def wait_for_run(project, run_id: str, timeout: float = 240) -> str:
    import dagster as dg

    from cto_dagster.commands.runs.instance_home import open_instance

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open_instance(project.home) as instance:
            run = instance.get_run_by_id(run_id)
            if run is not None and run.is_finished:
                return run.status.value
        time.sleep(1)
    with open_instance(project.home) as instance:
        status = instance.get_run_by_id(run_id).status
    assert status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE), status
    return status.value


@needs_chromium
def test_a_command_line_run_is_re_executed_from_the_ui(make_project):
    from playwright.sync_api import sync_playwright

    project = make_project(
        [
            demo_task(1, duration=1, title="Setup Database"),
            demo_task(2, deps=[1], duration=1, title="Create API Endpoints"),
            demo_task(3, duration=1, title="Build Frontend"),
            demo_task(4, deps=[2, 3], title="Integration Tests"),
            # a pair editing one file: the level's integration shows the conflict resolved
            demo_task(5, files={"routes.py": 'ROUTES = [\n    "/cart",\n]\n'}),
            demo_task(6, files={"routes.py": 'ROUTES = [\n    "/orders",\n]\n'}),
        ],
        settings={"conflicts": {"resolve": "agent"}},
    )
    hundred = make_project(json.loads(HUNDRED_TASKS.read_text())["master"]["tasks"], name="big")
    launched = project.cli("launch", CTO_DEMO_FAIL_TASKS="3")
    assert launched.returncode == 1, launched.stdout[-3000:] + launched.stderr[-3000:]
    assert "it is listed under the job in the UI" in launched.stdout
    failed = next(r for r in project.runs() if r.job_name == "play_project")
    assert failed.status.value == "FAILURE" and failed.remote_job_origin is not None
    assert project.records(failed.run_id)["3"].status == "failed"

    ui = Server(project.env(), with_daemon=True)
    big_ui = Server(hundred.env(), with_daemon=False)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        ui.wait_ready()
        big_ui.wait_ready()
        started = ui.log.read_text(errors="replace")
        assert "WARNING" not in started and "Warning:" not in started, started[-3000:]
        with sync_playwright() as driver:
            browser, page = open_browser(driver)
            # the command-line run is listed under its job
            page.goto(f"{ui.base}/locations/cto_dagster/jobs/play_project/runs")
            page.get_by_text(failed.run_id[:8]).first.wait_for()
            page.screenshot(path=str(SCREENSHOTS / "job-runs.png"))

            page.goto(f"{ui.base}/runs/{failed.run_id}")
            page.get_by_role("button", name="Re-execute all (*)").wait_for()
            # enabled once the UI has loaded the run's job from the code location
            page.locator("button:has([aria-label='arrow_drop_down']):not([disabled])").first.click()
            from_failure = re.compile(r"^\s*From failure\s*$")
            page.get_by_role("menuitem").filter(has_text=from_failure).click()
            page.wait_for_url(lambda url: failed.run_id not in url, timeout=60_000)
            new_run_id = page.url.rstrip("/").split("/")[-1]
            assert wait_for_run(project, new_run_id) == "SUCCESS"
            page.reload()
            page.get_by_text("Success").first.wait_for()
            page.screenshot(path=str(SCREENSHOTS / "run-re-executed-from-failure.png"))

            # the conflict an agent resolved is a WARN check to review
            page.goto(f"{ui.base}/assets/proj/integration_level_0?view=checks")
            page.get_by_text("resolved_conflicts").first.click()
            page.get_by_text("resolved by an agent: review these files: routes.py").wait_for()
            page.screenshot(path=str(SCREENSHOTS / "conflict-resolved-check.png"))

            shoot_guide_project(page, ui.base)
            shoot_hundred_tasks(page, big_ui.base)
            browser.close()
    finally:
        ui.stop()
        big_ui.stop()

    reexecuted = next(r for r in project.runs() if r.run_id == new_run_id)
    assert reexecuted.parent_run_id == failed.run_id
    assert set(project.records(new_run_id)) == {"3", "4"}  # only what failed or did not run
    report = project.cli("report", "--run-id", new_run_id)
    assert report.returncode == 0, report.stderr
    assert "Missing" not in report.stdout and "Failed" not in report.stdout


def shoot_guide_project(page, base: str) -> None:
    page.goto(f"{base}/asset-groups")
    page.get_by_text("proj_level_0").first.wait_for()
    page.wait_for_timeout(2000)
    page.screenshot(path=str(SCREENSHOTS / "guide-lineage-levels.png"))
    for _ in range(8):  # open every level's group: a small project reads well expanded
        closed = page.locator("[aria-label='unfold_more']")
        if not closed.count():
            break
        closed.first.click()
        page.wait_for_timeout(800)
    page.locator("button:has([aria-label='zoom_out'])").first.click()
    page.wait_for_timeout(1500)
    page.screenshot(path=str(SCREENSHOTS / "guide-lineage-expanded.png"))

    page.goto(f"{base}/assets")
    page.get_by_text("Task 1: Setup Database").first.wait_for()  # plain text, title first
    page.screenshot(path=str(SCREENSHOTS / "guide-catalog.png"))

    page.goto(f"{base}/locations/cto_dagster/jobs/play_project/playground")
    page.get_by_text("integration_base_branch: main").first.wait_for()  # filled in
    page.screenshot(path=str(SCREENSHOTS / "guide-launchpad.png"))

    page.goto(f"{base}/assets/proj/run_metrics")
    page.get_by_text("actual_speedup", exact=True).first.wait_for()
    page.get_by_text("(# marks the critical path)").first.wait_for()  # the text timeline, inline
    row = page.locator("tr", has_text="Gantt chart (image)")
    row.get_by_text("[Show Markdown]").click()
    chart = page.get_by_role("img", name="Gantt chart of the run")
    chart.wait_for()
    width = chart.evaluate("image => image.naturalWidth")
    assert width >= 800, "the chart image did not load"
    page.screenshot(path=str(SCREENSHOTS / "guide-metrics-gantt.png"))


def shoot_hundred_tasks(page, base: str) -> None:
    page.goto(f"{base}/asset-groups")
    for level in range(7):
        page.get_by_text(f"proj_level_{level}", exact=True).first.wait_for()
    page.get_by_text("proj_metrics", exact=True).first.wait_for()
    page.screenshot(path=str(SCREENSHOTS / "hundred-tasks-lineage.png"))

    page.goto(f"{base}/locations/cto_dagster/asset-groups/proj_level_1")
    page.get_by_text("integration_level_1", exact=True).first.wait_for(state="attached")
    page.wait_for_timeout(3000)  # the graph's layout settles
    page.screenshot(path=str(SCREENSHOTS / "hundred-tasks-level-1.png"))

    page.goto(f"{base}/assets")
    page.get_by_text("task_001").first.wait_for()
    found = re.findall(r"\b(task_\w+)\b", page.inner_text("body"))
    shown = list(dict.fromkeys(found))[:12]  # each name once, in the order the catalog lists
    assert shown == sorted(shown) and shown[:3] == ["task_001", "task_002", "task_003"], shown
    page.screenshot(path=str(SCREENSHOTS / "hundred-tasks-catalog.png"))
