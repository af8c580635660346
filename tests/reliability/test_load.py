"""Load: 40 tasks of one level against one bare remote with 16 agent slots."""

import time

import pytest

from tests.conftest import demo_task

pytestmark = pytest.mark.slow


def test_forty_parallel_tasks_one_remote(make_project):
    project = make_project([demo_task(i) for i in range(1, 41)], settings={"max_retries": 0})
    started = time.monotonic()
    result = project.execute(
        run_config={"execution": {"config": {"max_concurrent": 16}}}, timeout=900
    )
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "cannot lock ref" not in output and "index.lock" not in output
    branches = project.git("branch", "--list").split()
    assert sum(b.startswith("feature/task-") for b in branches) == 40
    records = project.records()
    assert len(records) == 40 and all(r.status == "materialized" for r in records.values())
    for task_id, record in records.items():
        head = project.git("rev-parse", f"feature/task-{task_id}-implementation").strip()
        assert head == record.metadata["head_commit"]
    print(f"40 tasks, 16 agent slots, one remote: {elapsed:.1f} s for the whole run")
