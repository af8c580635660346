"""A TaskMaster project as a Dagster Component (issue 19): built in Python, and in a real `dg`
project, scaffolded with `dg scaffold defs`, checked and listed with `dg`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from cto_dagster.components import TaskMasterProject
from cto_dagster.core.demo.sample_repository import create_sample_repository
from cto_dagster.defs.loader import ProjectLoadError

DG = str(Path(sys.executable).parent / "dg")


def test_a_component_is_a_project_with_its_own_job(tmp_path, monkeypatch):
    monkeypatch.setenv("CTO_DAGSTER_CACHE", str(tmp_path / "cache"))
    remote = create_sample_repository(tmp_path / "sample")
    component = TaskMasterProject(
        name="shop", repository=str(remote), agent={"preset": "demo"}, settings={"max_retries": 0}
    )
    defs = dg.component_defs(component=component)
    job = defs.resolve_job_def("play_project_shop")
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    wanted = {"shop/task_001", "shop/task_004", "shop/integration_level_2", "shop/run_metrics"}
    assert wanted <= keys
    assert job.tags["cto/project"] == "shop"
    assert defs.resolve_job_def("run_metrics_job_shop")

    wrong = TaskMasterProject(name="shop", repository=str(remote), agent={"preset": "nope"})
    with pytest.raises(ProjectLoadError, match=r"(?s)component shop.*unknown preset 'nope'"):
        dg.component_defs(component=wrong)


def dg_project(root: Path, registry_modules: bool = True) -> Path:
    """The smallest `dg` project; it names cto-dagster's components module unless told not to
    (the package's entry point then makes them known)."""
    project = root / "myproj"
    (project / "src" / "myproj" / "defs").mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        '[project]\nname = "myproj"\nversion = "0.1.0"\n\n'
        '[tool.dg]\ndirectory_type = "project"\n\n'
        '[tool.dg.project]\nroot_module = "myproj"\n'
        + ('registry_modules = ["cto_dagster.components"]\n' if registry_modules else "")
    )
    (project / "src" / "myproj" / "__init__.py").write_text("")
    (project / "src" / "myproj" / "defs" / "__init__.py").write_text("")
    (project / "src" / "myproj" / "definitions.py").write_text(
        "from pathlib import Path\nimport dagster as dg\n\n\n@dg.definitions\ndef defs():\n"
        "    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)\n"
    )
    subprocess.run(["git", "init", "-q", "-b", "main", str(project)], check=True)
    subprocess.run(
        ["git", "-C", str(project), "remote", "add", "origin", "git@github.com:acme/shop.git"],
        check=True,
    )
    return project


def run_dg(project: Path, *args: str, **env: str) -> str:
    """`dg ...` in the project (its `src` importable); it must succeed. Returns its stdout."""
    result = subprocess.run(
        [DG, *args],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(project / "src"), **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout


@pytest.mark.slow
def test_dg_scaffolds_checks_and_lists_a_project(tmp_path):
    project = dg_project(tmp_path)

    def run(*args: str) -> str:
        return run_dg(project, *args, CTO_DAGSTER_CACHE=str(tmp_path / "cache"))

    run("scaffold", "defs", "cto_dagster.components.TaskMasterProject", "shop")
    defs_yaml = project / "src" / "myproj" / "defs" / "shop" / "defs.yaml"
    text = defs_yaml.read_text()
    assert "type: cto_dagster.components.TaskMasterProject" in text
    assert "repository: https://github.com/acme/shop.git" in text  # from the repository's remote
    assert "token_env: GITHUB_TOKEN" in text

    remote = create_sample_repository(tmp_path / "sample")  # a reachable repository instead
    text = text.replace("https://github.com/acme/shop.git", str(remote))
    defs_yaml.write_text(text.replace("preset: claude ", "preset: demo   "))
    assert "All definitions loaded successfully" in run("check", "defs")
    listed = json.loads(run("list", "defs", "--json"))
    keys = {asset["asset_key"] for asset in listed["assets"]}
    assert {"shop/task_001", "shop/integration_level_0", "shop/run_metrics"} <= keys
    assert "play_project_shop" in {job["name"] for job in listed["jobs"]}


@pytest.mark.slow
def test_an_installed_cto_dagster_offers_its_component_to_any_dg_project(tmp_path):
    """The `dagster_dg_cli.registry_modules` entry point: no `registry_modules` needed."""
    project = dg_project(tmp_path, registry_modules=False)
    listed = run_dg(project, "list", "components", "--json")
    assert "cto_dagster.components.TaskMasterProject" in listed
