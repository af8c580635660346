"""`cto-dagster doctor`: every problem of a configured project found before a run, each with its
fix, secrets named and never shown."""

import pytest

from tests.conftest import demo_task

pytestmark = pytest.mark.slow


def test_a_ready_project_is_ready(make_project):
    project = make_project([demo_task(1), demo_task(2, deps=[1])])
    done = project.cli("doctor")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "✅ tasks file: tag master, 2 tasks to run in 2 levels" in done.stdout
    assert "✅ Ready." in done.stdout
    # which sandbox this machine gives the agent, and what it leaves open
    assert "sandbox: " in done.stdout and "it does not protect: " in done.stdout


def test_each_problem_is_named_with_its_fix_and_no_secret_is_shown(make_project, tmp_path):
    project = make_project(
        [demo_task(1)],
        settings={
            "agent": {"preset": "claude"},
            "git": {"token_env": "SHOP_TOKEN"},
            "repository": str(tmp_path / "nowhere.git"),
        },
    )
    done = project.cli("doctor", SHOP_TOKEN="ghp_doctorSecret123", PATH="/usr/bin:/bin")
    out = done.stdout
    assert done.returncode == 1
    assert "❌ agent claude: claude not found on PATH" in out
    assert "npm install -g @anthropic-ai/claude-code@2.1.332" in out
    assert "❌ agent credentials: none of ANTHROPIC_API_KEY" in out
    assert "✅ git token: SHOP_TOKEN is set" in out and "ghp_doctorSecret123" not in out
    assert "❌ remote" in out and "check the URL and token" in out
    assert "problem(s) to fix first" in out


def test_an_instance_on_dagsters_own_sqlite_event_log_is_told_how_to_switch(make_project):
    """A warning, not a problem: the instance works, but creates runs one event at a time."""
    project = make_project([demo_task(1)])
    config = project.home / "dagster.yaml"
    text = config.read_text()
    block = text[text.index("event_log_storage:") : text.index("telemetry:")]
    config.write_text(text.replace(block, ""))
    done = project.cli("doctor")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "⚠️  event log: Dagster's SQLite class writes a new run's planned events" in done.stdout
    assert "add the event_log_storage block" in done.stdout
    config.write_text(text)
    again = project.cli("doctor")
    assert "event log:" not in again.stdout
