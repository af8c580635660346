"""Property tests on random graphs: levels are a valid and tight layering."""

from hypothesis import given, settings
from hypothesis import strategies as st

from cto_dagster.core.planner import build_plan
from cto_dagster.core.taskmaster import TaskList, parse_tasks


@st.composite
def random_dags(draw):
    size = draw(st.integers(min_value=0, max_value=40))
    tasks = []
    for index in range(size):
        deps = (
            draw(
                st.lists(
                    st.integers(min_value=0, max_value=max(index - 1, 0)),
                    max_size=min(index, 5),
                    unique=True,
                )
            )
            if index
            else []
        )
        status = draw(st.sampled_from(["pending"] * 6 + ["done", "cancelled", "in-progress"]))
        tasks.append({"id": index, "title": "t", "dependencies": deps, "status": status})
    return tasks


def _plan(raw, include_all):
    problems = []
    tasks = parse_tasks(raw, problems)
    assert problems == []
    listing = TaskList(path=None, tag="master", tags=("master",), file_format="tagged", tasks=tasks)
    return build_plan(listing, include_all=include_all), tasks


@settings(max_examples=150, deadline=None)
@given(random_dags(), st.booleans())
def test_levels_are_valid_and_tight(raw, include_all):
    plan, tasks = _plan(raw, include_all)
    for task_id, level in plan.level_of.items():
        planned_deps = [d for d in tasks[task_id].dependencies if d in plan.level_of]
        # every dependency that runs sits in an earlier level
        assert all(plan.level_of[d] < level for d in planned_deps)
        # and no task could sit in an earlier level
        if level > 0:
            assert any(plan.level_of[d] == level - 1 for d in planned_deps)
        # nothing that runs depends on a cancelled or blocked task
        assert all(d in plan.level_of or tasks[d].is_done for d in tasks[task_id].dependencies)
    assert sum(map(len, plan.levels)) == plan.stats["total_tasks"]
    if include_all:
        assert len(plan.level_of) == len(tasks)
    if plan.levels:
        assert len(plan.critical_path) == len(plan.levels)
