"""Each project's git repository, GitHub and agent as Dagster resources: configured from its
settings, shown by name (never a secret's value), and overridable for one run."""

import sys

import dagster as dg
import pytest
import yaml

from cto_dagster.core.settings import AgentSettings, load_settings
from cto_dagster.defs.loader import build_definitions
from cto_dagster.defs.resources import AgentResource, GitHubResource, GitRepositoryResource
from tests.conftest import demo_task
from tests.helpers import tagged, task
from tests.test_definitions import configure

TOKEN = "ghp_ResourceT0kenNeverInConfig99"


def test_each_project_has_its_git_github_and_agent_resources(monkeypatch, tmp_path):
    config = configure(monkeypatch, tmp_path, {"shop": tagged(task(1), task(2, [1]))})
    data = yaml.safe_load(config.read_text())
    data["projects"][0].update(
        git={"token_env": "SHOP_TOKEN"},
        github={"repository": "acme/shop", "api_url": "http://127.0.0.1:9"},
        agent={"preset": "claude", "env_from": {"ANTHROPIC_API_KEY": "SHOP_ANTHROPIC_KEY"}},
    )
    config.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("SHOP_TOKEN", TOKEN)
    defs = build_definitions()
    resources = defs.resources
    assert {"play", "shop_git", "shop_github", "shop_agent"} <= set(resources)
    git, github, agent = resources["shop_git"], resources["shop_github"], resources["shop_agent"]
    assert isinstance(git, GitRepositoryResource) and git.token_env == "SHOP_TOKEN"
    assert git.git_token_names == ["SHOP_TOKEN"]
    assert isinstance(github, GitHubResource) and github.repository == "acme/shop"
    assert isinstance(agent, AgentResource) and agent.preset == "claude"
    assert agent.env_from == {"ANTHROPIC_API_KEY": "SHOP_ANTHROPIC_KEY"}
    # configuration holds names; the token is read when a step needs it
    assert TOKEN not in repr(resources)
    assert github.token() == TOKEN and TOKEN in git.repository().secrets  # read at use, redacted
    # the task and integration steps ask for them
    graph = defs.resolve_asset_graph()
    task_node = graph.get(dg.AssetKey(["shop", "task_001"]))
    integration = graph.get(dg.AssetKey(["shop", "integration_level_0"]))
    assert {"shop_git", "shop_agent"} <= set(task_node.assets_def.required_resource_keys)
    assert {"play", "shop_git", "shop_github"} <= set(integration.assets_def.required_resource_keys)


def test_the_agent_resource_is_the_agent_settings(monkeypatch, tmp_path):
    """Same fields, and validated by the settings: a bad override fails like a bad YAML."""
    assert set(AgentResource.model_fields) == set(AgentSettings.model_fields)
    configure(monkeypatch, tmp_path, {"shop": tagged(task(1))})
    project = load_settings().projects[0]
    resource = AgentResource.for_project(project)
    assert resource.spec() == project.agent.spec()
    with pytest.raises(ValueError, match="unknown preset"):
        AgentResource(preset="nonsense").spec()


WRITE_OVERRIDE = "import pathlib; pathlib.Path('chosen_for_this_run.txt').write_text('override\\n')"


@pytest.mark.slow
def test_a_run_can_use_another_agent_through_its_run_config(make_project):
    project = make_project([demo_task(1, files={"demo.txt": "demo\n"})])
    result = project.execute(
        run_config={
            "resources": {
                "proj_agent": {
                    "config": {"preset": None, "command": [sys.executable, "-c", WRITE_OVERRIDE]}
                }
            }
        }
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    files = project.git("ls-tree", "--name-only", "feature/task-1-implementation").split()
    assert "chosen_for_this_run.txt" in files and "demo.txt" not in files
