"""`cto-dagster launch --url`: a run submitted to a real running webserver (`dg dev`, as
`./scripts/ui` starts it) through Dagster's public GraphQL API, followed with the same progress
line, listed as a run of the webserver's code location; and found by itself when the local UI
serves the same instance."""

import pytest

from tests.conftest import demo_task
from tests.dagster_ui import Server


def write_config(project):
    path = project.root / "run.yaml"
    path.write_text("execution:\n  config:\n    max_concurrent: 2\n", encoding="utf-8")
    return path


@pytest.mark.slow
def test_launch_on_a_running_webserver(make_project):
    project = make_project(
        [demo_task(1, duration=1), demo_task(2, deps=[1]), demo_task(3)],
        settings={"max_retries": 0},
    )
    ui = Server(project.env(), with_daemon=True)
    try:
        ui.wait_ready()
        config = str(write_config(project))
        launched = project.cli("launch", "--url", ui.base, "-c", config, "--tags", '{"t": "a"}')
        out = launched.stdout
        assert launched.returncode == 0, out[-3000:] + launched.stderr[-3000:]
        assert f"submitted to {ui.base}" in out and "[3/3 tasks done]" in out
        assert "⏳ Loading the code location" not in out  # no code server of its own
        [run] = project.runs()
        assert run.job_name == "play_project" and run.status.value == "SUCCESS"
        assert run.tags["t"] == "a" and run.run_config["execution"]["config"]["max_concurrent"] == 2

        # the local UI serving this instance is used without --url; `--url local` opts out
        found = project.cli("launch", CTO_DAGSTER_UI_URL=ui.base)
        assert found.returncode == 0, found.stdout[-3000:] + found.stderr[-3000:]
        assert "serves this instance: the run is submitted there" in found.stdout
        assert "⏳ Loading the code location" not in found.stdout
        local = project.cli("launch", "--url", "local", CTO_DAGSTER_UI_URL=ui.base)
        assert local.returncode == 0 and "⏳ Loading the code location" in local.stdout
        assert len(project.runs()) == 3

        bad = project.cli("launch", "--url", ui.base, "--job", "nope")
        assert bad.returncode == 1 and "refused the run of nope" in bad.stderr
    finally:
        ui.stop()
    nowhere = project.cli("launch", "--url", "http://127.0.0.1:9")
    assert nowhere.returncode == 1 and "cannot reach the Dagster webserver" in nowhere.stderr
    scheme = project.cli("launch", "--url", "file:///etc/passwd")
    assert scheme.returncode == 1 and "must be an http(s) URL" in scheme.stderr
