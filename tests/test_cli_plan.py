"""`cto-dagster plan` and the original's script, as a user runs them (real subprocesses)."""

import json
import subprocess
import sys

from tests.helpers import GUIDE_EXAMPLE, REPO_ROOT, tagged, task, write_tasks

CLI = [sys.executable, "-m", "cto_dagster.cli"]


def run(*args, cwd=None):
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, cwd=cwd or REPO_ROOT, timeout=60, check=False
    )


def test_guide_example_summary():
    result = run("plan", str(GUIDE_EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:5] == [
        "✅ Dependency graph built successfully",
        "📊 Total tasks: 6",
        "📊 Execution levels: 3",
        "📊 Max parallel tasks: 3",
        "📊 Theoretical speedup: 2.0x",
    ]
    assert "📊 LEVEL 0\n  → Task 1: Setup Database" in result.stdout


def test_default_path_is_the_current_folder():
    result = run("plan", cwd=GUIDE_EXAMPLE)
    assert result.returncode == 0 and "📊 Total tasks: 6" in result.stdout


def test_json_and_output_file(tmp_path):
    out = tmp_path / "plan" / "out.json"
    result = run("plan", str(GUIDE_EXAMPLE), "--json", "--output", str(out))
    assert result.returncode == 0
    data = json.loads(result.stdout)
    assert data["levels"] == [["1", "3", "5"], ["2", "6"], ["4"]]
    assert set(data["stats"]) == {
        "total_tasks",
        "total_levels",
        "max_parallelism",
        "avg_parallelism",
        "theoretical_speedup",
    }
    assert json.loads(out.read_text()) == data


def test_invalid_input_exits_1_with_message(tmp_path):
    path = write_tasks(tmp_path, tagged(task(5, [16]), task(16, [5]), task(3, [42])))
    result = run("plan", str(path))
    assert result.returncode == 1 and result.stdout == ""
    assert "dependency cycle: 5 -> 16 -> 5" in result.stderr
    assert "task 3 depends on 42, which does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    missing = run("plan", str(tmp_path / "nowhere"))
    assert missing.returncode == 1
    assert missing.stderr.startswith("❌ TaskMaster tasks.json not found:")


def test_tag_and_all_flags(tmp_path):
    path = write_tasks(
        tmp_path,
        {
            "master": {"tasks": [task(1, status="done"), task(2, [1])]},
            "feat": {"tasks": [task(1), task(2), task(3, [1, 2])]},
        },
    )
    assert json.loads(run("plan", str(path), "--json").stdout)["levels"] == [["2"]]
    assert json.loads(run("plan", str(path), "--json", "--all").stdout)["levels"] == [["1"], ["2"]]
    feat = json.loads(run("plan", str(path), "--json", "--tag", "feat").stdout)
    assert feat["tag"] == "feat" and feat["levels"] == [["1", "2"], ["3"]]
    bad = run("plan", str(path), "--tag", "nope")
    assert bad.returncode == 1 and "tags present: master, feat" in bad.stderr


def test_original_script_command(tmp_path):
    out = tmp_path / "graph.json"
    script = REPO_ROOT / "scripts" / "build-dependency-graph.py"
    tasks_file = GUIDE_EXAMPLE / ".taskmaster/tasks/tasks.json"
    result = subprocess.run(
        [sys.executable, str(script), str(tasks_file), str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "📊 Theoretical speedup: 2.0x" in result.stdout
    assert json.loads(out.read_text())["levels"] == [["1", "3", "5"], ["2", "6"], ["4"]]
