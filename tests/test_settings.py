"""Project configuration: YAML, environment variables, the embedded demo, and clear errors."""

from pathlib import Path

import pytest

from cto_dagster.core.settings import Settings, SettingsError, load_settings, plan_project


def write(tmp_path, text):
    path = tmp_path / "cto.yaml"
    path.write_text(text)
    return {"CTO_DAGSTER_CONFIG": str(path)}


def test_yaml_with_relative_paths_and_agent(tmp_path):
    env = write(
        tmp_path,
        """
projects:
  - name: shop
    repository: ./repo.git
    tag: feature-x
    agent: {preset: claude, timeout_seconds: 600, env: {MODEL: opus}}
    git: {token_env: GITHUB_TOKEN}
""",
    )
    project = load_settings(env).projects[0]
    assert project.repository == str((tmp_path / "repo.git").resolve())
    assert project.agent.spec().preset_definition.binary == "claude"
    assert project.git.token_env == "GITHUB_TOKEN"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("projects: []", "no projects configured"),
        ("projects: [{name: 'bad name', repository: x}]", "projects.0.name"),
        ("projects: [{name: a, repository: x, base_branch: '--evil'}]", "not a valid branch name"),
        ("projects: [{name: a, repository: x, agent: {preset: nope}}]", "unknown preset"),
        ("projects: [{name: a, repository: x, surprise: 1}]", "projects.0.surprise"),
        ("projects: [{name: a, repository: x}, {name: a, repository: y}]", "must be unique"),
        ("projects: [{name: a, repository: x, git: {token_env: 'ghp_abc-123'}}]", "NAME of an"),
        ('projects: [{name: a, repository: x, commit_exclude: ["a\\nb"]}]', "one-line gitignore"),
        ("[1, 2", "not valid YAML"),
        ("just text", "must hold a mapping"),
    ],
)
def test_bad_configuration_is_explained(tmp_path, text, expected):
    with pytest.raises(SettingsError) as info:
        load_settings(write(tmp_path, text))
    assert expected in str(info.value)


def test_environment_quick_start(tmp_path):
    settings = load_settings(
        {
            "CTO_DAGSTER_REPOSITORY": str(tmp_path / "my-repo.git"),
            "CTO_DAGSTER_TAG": "mvp",
            "CTO_DAGSTER_AGENT": "codex",
        }
    )
    project = settings.projects[0]
    assert project.name == "my_repo" and project.tag == "mvp"
    assert project.agent.preset == "codex"


def test_a_setting_under_its_former_name_is_refused_not_ignored(tmp_path):
    """Before the CTO_DAGSTER_ prefix, CTO_REPOSITORY...: ignored, the demo project would run."""
    former = "CTO_" + "REPOSITORY"  # built: tests/test_layout.py lists every CTO_ name it sees
    with pytest.raises(SettingsError) as info:
        load_settings({former: str(tmp_path / "my-repo.git")})
    assert f"{former} is now CTO_DAGSTER_REPOSITORY" in str(info.value)
    # a leftover of another tool beside the new names is no reason to refuse them
    settings = load_settings(
        {"CTO_DAGSTER_REPOSITORY": str(tmp_path / "r.git"), "CTO_" + "TAG": "x"}
    )
    assert settings.projects[0].tag != "x"


def test_embedded_demo_default_plans(tmp_path):
    settings = load_settings({"CTO_DAGSTER_DEMO_DIR": str(tmp_path / "demo")})
    plan = plan_project(settings.projects[0], environ={"CTO_DAGSTER_CACHE": str(tmp_path / "c")})
    # the guide's example, plus the demo's conflicting pair (7, 8) and the task needing both (9)
    assert plan.levels == [["1", "3", "5", "7", "8"], ["2", "6", "9"], ["4"]]
    assert settings.projects[0].conflicts.resolve == "agent"


def test_missing_tasks_file_on_the_branch(tmp_path):
    from cto_dagster.core.demo.sample_repository import create_sample_repository

    remote = create_sample_repository(tmp_path / "r", tasks_json="{}")
    project = load_settings(
        {"CTO_DAGSTER_REPOSITORY": str(remote), "CTO_DAGSTER_TASKS_FILE": "nope/tasks.json"}
    )
    with pytest.raises(SettingsError, match=r"TaskMaster tasks\.json not found: nope/tasks\.json"):
        plan_project(project.projects[0], environ={"CTO_DAGSTER_CACHE": str(tmp_path / "c")})


def test_github_repository_is_read_from_the_url():
    env = {"CTO_DAGSTER_REPOSITORY": "https://github.com/acme/shop.git"}
    assert load_settings(env).projects[0].github_repository == "acme/shop"


def test_sample_repository_created_by_many_processes_at_once(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys, pathlib; "
        "from cto_dagster.core.demo.sample_repository import create_sample_repository; "
        "print(create_sample_repository(pathlib.Path(sys.argv[1])))"
    )
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path / "demo")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    results = [w.communicate(timeout=120) for w in workers]
    assert all(w.returncode == 0 for w in workers), [err for _, err in results]
    assert {out.strip() for out, _ in results} == {str(tmp_path / "demo" / "remote.git")}
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == ["remote.git"]


def test_a_sample_at_a_relative_path_inside_a_repository_leaves_that_repository_alone(
    tmp_path, monkeypatch
):
    """`dg check defs` in a checkout makes the demo's sample under `.cto-dagster/demo` (relative):
    its seed commit once went to the checkout's own repository, taking every change with it."""
    import subprocess

    from cto_dagster.core.demo.sample_repository import create_sample_repository

    outer = tmp_path / "checkout"
    subprocess.run(["git", "init", "--quiet", str(outer)], check=True)
    (outer / "work.txt").write_text("not committed\n", encoding="utf-8")
    monkeypatch.chdir(outer)
    remote = create_sample_repository(Path(".cto-dagster/demo"))
    assert (outer / remote / "HEAD").exists()
    head = subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], cwd=outer, check=False)
    assert head.returncode != 0  # still no commit in the checkout


def test_steps_plan_from_the_commit_their_run_planned_from(tmp_path):
    """A run's step processes get the commits the run planned from (PINNED_COMMITS_ENV): they
    plan the same tasks, without fetching, even after the branch moved."""
    import json

    from cto_dagster.core.demo.sample_repository import create_sample_repository
    from cto_dagster.core.settings import PINNED_COMMITS_ENV, planned_commits
    from tests.helpers import push_to_main

    def tasks_json(n):
        tasks = [{"id": i, "title": f"T{i}", "status": "pending"} for i in range(1, n + 1)]
        return json.dumps({"master": {"tasks": tasks}})

    remote = create_sample_repository(tmp_path / "r", tasks_json=tasks_json(1))
    project = load_settings({"CTO_DAGSTER_REPOSITORY": str(remote)}).projects[0]
    env = {"CTO_DAGSTER_CACHE": str(tmp_path / "c")}
    assert plan_project(project, environ=env).task_ids == ["1"]
    pins = {PINNED_COMMITS_ENV: json.dumps(planned_commits())}

    push_to_main(remote, tmp_path / "clone", {".taskmaster/tasks/tasks.json": tasks_json(2)}, "two")

    assert plan_project(project, environ=env).task_ids == ["1", "2"]  # a new load follows main
    remote.rename(tmp_path / "gone")  # a fetch would now fail
    assert plan_project(project, environ={**env, **pins}).task_ids == ["1"]
    with pytest.raises(SettingsError, match="cannot read branch main"):
        plan_project(project, environ={**env, PINNED_COMMITS_ENV: '{"x": "y"}'})


def test_the_example_configuration_is_valid_and_matches_the_defaults():
    from cto_dagster.core.settings import AGENT_SCAFFOLDING
    from tests.helpers import REPO_ROOT

    example = load_settings({"CTO_DAGSTER_CONFIG": str(REPO_ROOT / "examples/cto-dagster.yaml")})
    project = example.projects[0]
    assert project.name == "shop" and project.agent.preset == "claude"
    assert project.commit_exclude == list(AGENT_SCAFFOLDING)


def test_a_token_inside_the_repository_url_is_refused_without_printing_it(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(
        "projects:\n  - name: shop\n    repository: https://me:ghp_SECRET123456@github.com/a/b.git\n"
    )
    with pytest.raises(SettingsError) as info:
        load_settings({"CTO_DAGSTER_CONFIG": str(config)})
    assert "git.token_env" in str(info.value)
    assert "ghp_SECRET123456" not in str(info.value)
    quick = {"CTO_DAGSTER_REPOSITORY": "https://x:ghp_SECRET123456@example.com/a.git"}
    with pytest.raises(SettingsError) as info:
        load_settings(quick)
    assert "ghp_SECRET123456" not in str(info.value)


def test_secret_names_cover_every_project():
    settings = Settings.model_validate(
        {
            "projects": [
                {"name": "a", "repository": "/x", "git": {"token_env": "A_TOKEN"}},
                {
                    "name": "b",
                    "repository": "/y",
                    "git": {"token_env": "B_TOKEN"},
                    "secret_env": ["B_DB_PASSWORD"],
                    "agent": {"preset": "claude", "env_from": {"ANTHROPIC_API_KEY": "B_KEY"}},
                },
            ]
        }
    )
    names = settings.secret_names()
    assert names.git_tokens == {"A_TOKEN", "B_TOKEN"}
    assert {"B_KEY", "B_DB_PASSWORD", "ANTHROPIC_API_KEY"} <= names.others
    assert "ANTHROPIC_BASE_URL" not in names.others  # a URL is not a secret
    env = {"A_TOKEN": "tokenA123", "B_KEY": "keyB4567", "ANTHROPIC_BASE_URL": "http://x"}
    assert names.redact("a tokenA123 b keyB4567 http://x", env) == "a *** b *** http://x"


def test_an_ssh_url_on_kubernetes_is_refused_with_what_to_use_instead(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("projects:\n  - name: shop\n    repository: git@github.com:acme/shop.git\n")
    environ = {"CTO_DAGSTER_CONFIG": str(config), "CTO_DAGSTER_KIND": "kubernetes"}
    with pytest.raises(SettingsError) as info:
        load_settings(environ)
    assert "SSH URL" in str(info.value) and "git.token_env" in str(info.value)
    assert load_settings({"CTO_DAGSTER_CONFIG": str(config)}).projects[0].kind == "local"


def test_a_pinned_plan_is_read_at_its_commit_from_an_empty_cache(tmp_path):
    """A step pod starts with an empty cache: it must plan from the commit its run planned from,
    not from the branch head (issue 19: the head used to be fetched in its place)."""
    import json
    import subprocess

    from cto_dagster.core.demo.sample_repository import create_sample_repository
    from cto_dagster.core.settings import PINNED_COMMITS_ENV

    one = {"master": {"tasks": [{"id": 1, "title": "one", "dependencies": []}]}}
    remote = create_sample_repository(tmp_path / "r", tasks_json=json.dumps(one))
    project = load_settings({"CTO_DAGSTER_REPOSITORY": str(remote)}).projects[0]
    first = plan_project(project, environ={"CTO_DAGSTER_CACHE": str(tmp_path / "c1")})
    planned_at = subprocess.run(
        ["git", f"--git-dir={remote}", "rev-parse", "main"], capture_output=True, text=True
    ).stdout.strip()
    # someone pushes a second task after the run was planned
    work = tmp_path / "w"
    subprocess.run(["git", "clone", "-q", str(remote), str(work)], check=True)
    two = {"master": {"tasks": [*one["master"]["tasks"], {"id": 2, "title": "two"}]}}
    (work / ".taskmaster/tasks/tasks.json").write_text(json.dumps(two))
    ident = ["-c", "user.name=x", "-c", "user.email=x@x"]
    subprocess.run(["git", *ident, "-C", str(work), "commit", "-qam", "two"], check=True)
    subprocess.run(["git", "-C", str(work), "push", "-q", "origin", "main"], check=True)

    pin = json.dumps({f"{remote} main": planned_at})
    step = plan_project(
        project, environ={"CTO_DAGSTER_CACHE": str(tmp_path / "empty"), PINNED_COMMITS_ENV: pin}
    )
    assert first.task_ids == step.task_ids == ["1"]
    fresh = plan_project(project, environ={"CTO_DAGSTER_CACHE": str(tmp_path / "c2")})
    assert fresh.task_ids == ["1", "2"]  # unpinned: the branch as it is now

    gone = json.dumps({f"{remote} main": "0" * 40})
    with pytest.raises(SettingsError, match="no longer has"):
        plan_project(
            project, environ={"CTO_DAGSTER_CACHE": str(tmp_path / "e2"), PINNED_COMMITS_ENV: gone}
        )
