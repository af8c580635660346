"""Integration granularity: one branch and PR for several levels, or for the whole run; a newer
run's PR supersedes the older run's of the same levels."""

import pytest
from pydantic import ValidationError

from cto_dagster.core.integration.level_stages import IntegrationStage, integration_stages
from cto_dagster.core.settings import IntegrationSettings
from cto_dagster.core.support.names import InvalidName, check_branch_name, integration_branch
from tests.conftest import demo_task
from tests.fake_github import FakeGitHub
from tests.helpers import CONFIG, check_evaluations, edited

TOKEN = "ghp_StageT0kenThatMustNeverLeak77"


def test_stages_cover_every_level_once():
    assert integration_stages(3) == [
        IntegrationStage(0, 0),
        IntegrationStage(1, 1),
        IntegrationStage(2, 2),
    ]
    assert integration_stages(5, "run") == [IntegrationStage(0, 4)]
    assert integration_stages(7, 3) == [
        IntegrationStage(0, 2),
        IntegrationStage(3, 5),
        IntegrationStage(6, 6),
    ]
    assert integration_stages(0, "run") == []
    for granularity in (0, -2, "weekly", True):
        with pytest.raises(ValueError):
            integration_stages(4, granularity)


def test_stage_names_keep_the_guides_for_one_level():
    one, several = IntegrationStage(3, 3), IntegrationStage(0, 4)
    assert one.branch("ab12cd34") == "integration/level-3-ab12cd34"
    assert one.asset_name == "integration_level_3" and one.label == "level 3"
    assert several.branch("ab12cd34") == "integration/levels-0-4-ab12cd34"
    assert several.asset_name == "integration_levels_0_4" and several.label == "levels 0-4"
    assert check_branch_name(several.branch("ab12cd34")) == "integration/levels-0-4-ab12cd34"
    assert several.is_branch_of_any_run("integration/levels-0-4-ffff0000")
    assert not several.is_branch_of_any_run("integration/levels-0-40-ffff0000")
    assert not one.is_branch_of_any_run("integration/level-30-ffff0000")
    assert one.is_branch_of_any_run("integration/level-3-ffff0000")
    for bad in ("integration/levels-0-x-tok", "integration/levels-1--tok", "integration/levels-"):
        with pytest.raises(InvalidName):
            check_branch_name(bad)
    with pytest.raises(InvalidName):
        integration_branch(4, "tok", 2)


def test_granularity_setting_is_validated():
    assert IntegrationSettings().granularity == "level"
    assert IntegrationSettings(granularity="run").stages(3) == [IntegrationStage(0, 2)]
    assert IntegrationSettings(granularity=2).stages(3) == [
        IntegrationStage(0, 1),
        IntegrationStage(2, 2),
    ]
    for bad in (0, "daily", -1):
        with pytest.raises(ValidationError):
            IntegrationSettings(granularity=bad)


@pytest.mark.slow
def test_whole_run_integration_and_newer_pr_supersedes_older(make_project):
    tasks = [
        demo_task(1, files={"a.txt": "one\n"}),
        demo_task(2, files={"b.txt": "two\n"}),
        demo_task(3, deps=[1], files={"a.txt": "three\n"}),  # builds on 1: not an overlap
        demo_task(4, deps=[2], files={"config.txt": edited(2, "four")}),
        demo_task(5, deps=[2], files={"config.txt": edited(18, "five")}),  # beside 4: overlap
    ]
    with FakeGitHub() as github:
        project = make_project(
            tasks,
            settings={
                **github.settings(),
                "integration": {"granularity": "run"},
            },
            files={"config.txt": CONFIG},
        )
        first = project.execute(CTO_TEST_TOKEN=TOKEN)
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        second = project.execute(CTO_TEST_TOKEN=TOKEN)
        assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
        pulls = [dict(p) for p in github.pulls]
        comments = dict(github.comments)

    import dagster as dg

    from cto_dagster.commands.runs.instance_home import open_instance

    runs = [r for r in project.runs() if r.job_name == "play_project"]
    newest, oldest = runs[0], runs[-1]
    with open_instance(project.home) as instance:
        keys = {k.path[-1] for k in instance.get_asset_keys() if k.path[-1].startswith("integ")}
        event = instance.get_latest_materialization_event(
            dg.AssetKey(["proj", "integration_levels_0_1"])
        )
        checks = check_evaluations(instance, newest.run_id)
    assert keys == {"integration_levels_0_1"}  # one integration for the run's two levels
    meta = event.asset_materialization.metadata
    branch = f"integration/levels-0-1-{newest.run_id[:8]}"
    assert meta["integration_branch"].value == branch
    assert meta["integrated_levels"].value == "0-1"
    assert meta["merged_branches"].value == ", ".join(
        f"feature/task-{t}-implementation" for t in (1, 2, 3, 4, 5)
    )
    assert project.git("show", f"{branch}:a.txt") == "three\n"
    merged_config = project.git("show", f"{branch}:config.txt")
    assert "four" in merged_config and "five" in merged_config
    overlap = checks[("integration_levels_0_1", "file_overlap")]
    assert not overlap.passed
    assert "config.txt (tasks 4, 5)" in overlap.description
    assert "a.txt" not in overlap.description  # task 3 changed what its dependency wrote
    assert checks[("integration_levels_0_1", "merge_conflicts")].passed

    assert [p["title"] for p in pulls] == [
        f"Integration PR: Levels 0-1 for {oldest.run_id[:8]}",
        f"Integration PR: Levels 0-1 for {newest.run_id[:8]}",
    ]
    assert pulls[0]["state"] == "closed" and pulls[1]["state"] == "open"
    assert pulls[1]["base"]["ref"] == "main"
    assert comments[1][0].startswith("Superseded by #2")
    assert meta["superseded_pull_requests"].value == "#1"
    assert TOKEN not in first.stdout + first.stderr + second.stdout + second.stderr
