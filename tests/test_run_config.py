"""Run config, read in one place: the deep merge of config files (and of Kubernetes step
config), and the executor's settings a run was launched with."""

import dagster as dg
import pytest

from cto_dagster.commands.launch import _merged_config
from cto_dagster.core.support.mappings import deep_merge
from cto_dagster.defs.run_records import agent_slots, executor_config


def test_maps_merge_and_everything_else_is_replaced():
    base = {"ops": {"a": {"config": {"x": 1, "y": 2}}}, "tags": ["a"], "n": {"k": 1}}
    override = {"ops": {"a": {"config": {"y": 3}}, "b": {}}, "tags": ["b"], "n": 5}
    merged = deep_merge(base, override)
    assert merged == {"ops": {"a": {"config": {"x": 1, "y": 3}}, "b": {}}, "tags": ["b"], "n": 5}
    assert base["ops"]["a"]["config"] == {"x": 1, "y": 2}  # neither input changes
    assert override == {"ops": {"a": {"config": {"y": 3}}, "b": {}}, "tags": ["b"], "n": 5}


def test_later_config_files_override_earlier_keys(tmp_path):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("execution:\n  config:\n    max_concurrent: 2\n    parallel_execution: true\n")
    second.write_text("execution:\n  config:\n    max_concurrent: 4\n")
    assert _merged_config([str(first), str(second)]) == {
        "execution": {"config": {"max_concurrent": 4, "parallel_execution": True}}
    }


@pytest.mark.parametrize(
    ("run_config", "config", "slots"),
    [
        (None, {}, 8),
        ({"execution": None}, {}, 8),
        ({"execution": {"config": "odd"}}, {}, 8),
        ({"execution": {"config": {"max_concurrent": 3}}}, {"max_concurrent": 3}, 3),
        (
            {"execution": {"config": {"max_concurrent": 3, "parallel_execution": False}}},
            {"max_concurrent": 3, "parallel_execution": False},
            1,
        ),
    ],
)
def test_the_executor_config_and_slots_of_a_run(run_config, config, slots):
    run = dg.DagsterRun(job_name="play_shop", run_config=run_config or {})
    assert executor_config(run) == config
    assert agent_slots(run) == slots
