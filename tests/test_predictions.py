"""Durations learned from earlier runs (issue 15, part 5): with no duration in the tasks file,
priorities, the job's description and the run's metrics use each task's recorded agent time."""

import json
import subprocess
import sys
from dataclasses import replace

import pytest

from cto_dagster.core.planning.planner import build_plan
from cto_dagster.core.planning.predictions import LEARNED_ENV, pinned_learned, predict
from cto_dagster.core.taskmaster import TaskList, parse_tasks
from cto_dagster.defs.task_assets import task_priorities


def plan_of(raw: list[dict]):
    tasks = parse_tasks(raw, [])
    listing = TaskList(path=None, tag="master", tags=("master",), file_format="tagged", tasks=tasks)
    return build_plan(listing)


GRAPH = [  # 1 alone; 2 -> 3; 4 alone, no history
    {"id": 1, "title": "long alone"},
    {"id": 2, "title": "short chain head"},
    {"id": 3, "title": "short chain tail", "dependencies": [2]},
    {"id": 4, "title": "never timed"},
]


def test_history_fills_what_the_file_lacks_and_drives_the_priorities(monkeypatch):
    monkeypatch.delenv("CTO_DAGSTER_PRIORITIES", raising=False)
    plan = plan_of(GRAPH)
    plan.tasks["4"] = replace(plan.tasks["4"], complexity=10.0)  # as the complexity report sets
    assert predict(plan, {}) is None  # nothing known: counts and complexity, as before
    by_count = task_priorities(plan)
    assert by_count["2"] > by_count["1"]  # the longer chain, counted in tasks

    learned = {"1": 30.0, "2": 2.0, "3": 2.0}
    prediction = predict(plan, learned)
    assert prediction.durations["1"] == 30.0
    assert prediction.durations["4"] == pytest.approx(2.0 * 10 / 5)  # median, by complexity
    assert prediction.critical_path == ["1"] and prediction.critical_path_seconds == 30.0
    assert prediction.makespan(slots=1) == pytest.approx(38.0)  # all the work on one slot
    assert "3 from earlier runs" in prediction.source and "1 estimated" in prediction.source
    by_time = task_priorities(plan, prediction)
    assert by_time["1"] > by_time["2"]  # the long task first, now that its time is known

    # the file's own estimate wins over history
    timed = [dict(GRAPH[0], metadata={"duration": 5}), *GRAPH[1:]]
    assert predict(plan_of(timed), learned).durations["1"] == 5.0


def test_the_pinned_durations_are_what_a_step_process_reads():
    pin = json.dumps({"proj": {"1": 3.5, "2": True, "x": "no"}})
    assert pinned_learned({LEARNED_ENV: pin}, "proj") == {"1": 3.5}
    assert pinned_learned({LEARNED_ENV: pin}, "other") == {}
    assert pinned_learned({}, "proj") is None
    assert pinned_learned({LEARNED_ENV: "not json"}, "proj") is None


AGENT = (
    "import os, time, pathlib; t = os.environ['CTO_TASK_ID']; "
    "time.sleep({'1': 3.0}.get(t, 0.2)); pathlib.Path(f'out-{t}.txt').write_text(t)"
)


@pytest.mark.slow
def test_a_second_run_predicts_from_the_first(make_project):
    tasks = [
        {"id": 1, "title": "slow alone", "dependencies": []},
        {"id": 2, "title": "quick head", "dependencies": []},
        {"id": 3, "title": "quick tail", "dependencies": [2]},
    ]
    project = make_project(
        tasks, settings={"agent": {"preset": None, "command": [sys.executable, "-c", AGENT]}}
    )
    probe = (
        "import cto_dagster.definitions as d; job = d.defs().resolve_job_def('play_project'); "
        "print(job.description.splitlines()[0]); print(job.tags.get('cto/predicted_makespan_s')); "
        "print({n.name: n.definition.tags.get('dagster/priority') for n in job.graph.nodes})"
    )

    def load():
        out = subprocess.run(
            [sys.executable, "-c", probe], env=project.env(), capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout.splitlines()

    description, predicted, priorities = load()
    assert "Predicted makespan" not in description and predicted == "None"
    first = project.execute()
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]

    description, predicted, priorities = load()
    assert "Predicted makespan" in description and "3 from earlier runs" in description
    priority = eval(priorities)  # {op name: priority}
    assert int(priority["proj__task_001"]) > int(priority["proj__task_002"])
    assert 2.5 < float(predicted) < 10

    second = project.execute()
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    report = project.cli("report")
    assert "🔮 Predicted makespan:" in report.stdout, report.stdout[-2000:]
