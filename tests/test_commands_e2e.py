"""The commands a newcomer types, end to end: the demo, then report and resume with nothing set,
and `cto-dagster launch` (runs of the code location, with progress)."""

import os
import subprocess
import sys

import pytest

from tests.conftest import demo_task

pytestmark = pytest.mark.slow


def run(args, cwd, **env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CTO_", "DAGSTER_"))}
    return subprocess.run(
        [sys.executable, "-m", "cto_dagster.cli", *args],
        cwd=cwd,
        env={**clean, "PYTHONUNBUFFERED": "1", **env},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_the_demo_then_report_and_resume_find_its_instance(tmp_path):
    cache = {"CTO_DAGSTER_CACHE": str(tmp_path / "cache")}
    demo = run(["demo"], tmp_path, **cache)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    out = demo.stdout
    assert "📊 Theoretical speedup: 3.0x" in out
    assert "it is listed under the job in the UI" in out
    assert "🚀 Task 3 started" in out and "[9/9 tasks done]" in out
    # the demo's conflicting pair: resolved by the demo agent, verified, at both merge places
    assert "🔀 Conflict in task 9's dependencies" in out
    assert "🔀 Conflict in level 0 integration" in out
    assert out.count("✅ Conflict resolved: feature/task-8-implementation") == 2
    assert "verify passed (`python" in out
    assert "🔀 Merge conflicts: 1 predicted, 2 resolved by an agent" in out
    # verified work: task 6's first attempt fails the sample's tests and its agent repairs it;
    # tasks 2 and 9 pass alone and fail together on level 1's branch, where the resolver fixes it
    assert "✅ Task 6: checks passed after 1 repair(s)" in out
    assert "✅ Level 1 integration: checks passed after 1 repair(s)" in out
    verified = "✅ Verified: 9/9 tasks (1 after repair), 3/3 levels (1 repaired by an agent)"
    assert verified in out
    assert "📊 Performance report: uv run cto-dagster report" in out  # the closing lines
    assert "dagster - DEBUG" not in out  # the run's own log goes to a file, not the terminal

    report = run(["report"], tmp_path, **cache)  # no DAGSTER_HOME: the demo's instance
    assert report.returncode == 0, report.stderr
    home = tmp_path / ".cto-dagster" / "demo" / "dagster_home"
    assert f"using the demo's instance at {home}" in report.stdout
    assert "📊 PERFORMANCE TELEMETRY" in report.stdout
    assert verified in report.stdout and "🧪 Checks " in report.stdout

    resume = run(["resume"], tmp_path, **cache)
    assert resume.returncode == 1
    assert "no failed run of play_project to resume" in resume.stderr
    assert f"using the demo's instance at {home}" in resume.stdout

    (tmp_path / "empty").mkdir()
    elsewhere = run(["report"], tmp_path / "empty", **cache)
    assert elsewhere.returncode == 1
    assert "DAGSTER_HOME is not set" in elsewhere.stderr


def test_launch_is_a_run_of_the_code_location_with_progress(make_project):
    project = make_project(
        [demo_task(1, duration=1), demo_task(2, deps=[1]), demo_task(3)],
        settings={"max_retries": 0},
    )
    launched = project.cli("launch", "-c", str(write_config(project)), "--tags", '{"team": "shop"}')
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    assert "[3/3 tasks done]" in launched.stdout
    assert "📊 LEVEL 0" in launched.stdout
    # no silent wait before the run exists (a 500-task location takes ~13 s to load)
    out = launched.stdout
    assert out.index("⏳ Loading the code location") < out.index("⏳ Loaded in ")
    assert out.index("; creating the run...") < out.index("▶️  Run ")
    run_ = project.runs()[0]
    assert run_.job_name == "play_project" and run_.status.value == "SUCCESS"
    assert run_.remote_job_origin.location_name == "cto_dagster"
    assert run_.tags["team"] == "shop" and run_.tags["cto/project"] == "proj"
    assert run_.run_config["execution"]["config"]["max_concurrent"] == 2

    bad = project.cli("launch", "--job", "nope")
    assert bad.returncode == 1 and "no job 'nope' in the code location" in bad.stderr
    bad_tags = project.cli("launch", "--tags", "[1]")
    assert bad_tags.returncode == 2 and "--tags must be a JSON object" in bad_tags.stderr


def write_config(project):
    path = project.root / "run.yaml"
    path.write_text("execution:\n  config:\n    max_concurrent: 2\n", encoding="utf-8")
    return path
