"""Where the projects come from: a YAML file (`CTO_DAGSTER_CONFIG`), environment variables
(`CTO_DAGSTER_REPOSITORY`...), or the embedded demo."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

import yaml
from pydantic import ValidationError

from cto_dagster.core.demo.sample_repository import (
    create_sample_repository,
    demo_repository_files,
    demo_tasks_json,
)
from cto_dagster.core.git.command import is_local_path
from cto_dagster.core.settings.models import DEFAULT_DEMO_DIR, Settings, SettingsError


def format_validation(error: ValidationError, source: str) -> SettingsError:
    lines = [f"❌ invalid configuration in {source}:"]
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"  - {where}: {item['msg']}")
    return SettingsError("\n".join(lines))


def _resolve_relative(value: str | None, base: Path) -> str | None:
    if value is None or not is_local_path(value) or Path(value).is_absolute():
        return value
    return str((base / value).resolve())


def load_yaml_settings(path: Path) -> Settings:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"❌ cannot read configuration {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"❌ {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"❌ {path} must hold a mapping with a `projects:` list")
    projects = data.get("projects")
    if isinstance(projects, list):
        for project in projects:
            if isinstance(project, dict):
                for key in ("repository", "tasks_path", "workspace_root"):
                    if isinstance(project.get(key), str):
                        project[key] = _resolve_relative(project[key], path.parent)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise format_validation(exc, str(path)) from None


def _settings_from_env(environ: Mapping[str, str]) -> Settings:
    repository = environ["CTO_DAGSTER_REPOSITORY"]
    default_name = re.sub(r"\W", "_", Path(repository.rstrip("/")).stem) or "project"
    if not re.match(r"[A-Za-z_]", default_name):
        default_name = f"p_{default_name}"
    project: dict[str, object] = {
        "name": environ.get("CTO_DAGSTER_PROJECT", default_name),
        "repository": _resolve_relative(repository, Path.cwd()),
        "base_branch": environ.get("CTO_DAGSTER_BASE_BRANCH", "main"),
        "agent": {"preset": environ.get("CTO_DAGSTER_AGENT", "demo")},
    }
    optional = {
        "CTO_DAGSTER_TAG": "tag",
        "CTO_DAGSTER_TASKS_FILE": "tasks_file",
        "CTO_DAGSTER_TASKS_PATH": "tasks_path",
    }
    for env_name, key in optional.items():
        if environ.get(env_name):
            project[key] = environ[env_name]
    if environ.get("CTO_DAGSTER_TAGS"):  # several tags: `database,api`, or `all`
        names = [t.strip() for t in environ["CTO_DAGSTER_TAGS"].split(",") if t.strip()]
        if names == ["all"]:
            project["all_tags"] = True
        else:
            project["tags"] = names
    if environ.get("CTO_DAGSTER_GIT_TOKEN_ENV"):
        project["git"] = {"token_env": environ["CTO_DAGSTER_GIT_TOKEN_ENV"]}
    try:
        return Settings.model_validate({"projects": [project]})
    except ValidationError as exc:
        raise format_validation(exc, "the CTO_DAGSTER_* environment variables") from None


def demo_checks() -> list[list[str]]:
    """The demo's checks: the sample's `unittest` suite, with this interpreter alone."""
    return [[sys.executable, "-m", "unittest", "discover", "-s", "tests", "-t", "."]]


def demo_settings(folder: Path) -> Settings:
    """The demo project: the guide's tasks and a conflicting pair, resolved by the demo agent and
    verified by compiling the sources; every task and integration branch passes the sample's
    tests (`verify`), a task's failure repaired by its agent and an integration branch's by the
    resolver. The resolutions compile only: their checks run once the whole level is merged."""
    remote = create_sample_repository(
        folder, tasks_json=demo_tasks_json(), extra_files=demo_repository_files()
    )
    return Settings.model_validate(
        {
            "projects": [
                {
                    "name": "demo",
                    "repository": str(remote.resolve()),
                    "workspace_root": str((folder / "workspaces").resolve()),
                    "conflicts": {
                        "resolve": "agent",
                        "verify": [sys.executable, "-m", "compileall", "-q", "src"],
                    },
                    "verify": {
                        "checks": demo_checks(),
                        "timeout_seconds": 120,
                        "repair_attempts": 1,
                        "integration_repair": "agent",
                    },
                }
            ]
        }
    )


def _is_ssh(url: str) -> bool:
    return url.startswith("ssh://") or bool(re.match(r"^[\w.-]+@[\w.-]+:", url))


# settings read from the environment before every internal name took the CTO_DAGSTER_ prefix
_RENAMED_SETTINGS = (
    *("REPOSITORY", "PROJECT", "TAG", "TAGS", "AGENT", "TASKS_FILE", "TASKS_PATH"),
    "GIT_TOKEN_ENV",
)


def _refuse_former_names(environ: Mapping[str, str]) -> None:
    """A setting under its former name would be ignored and the demo project run instead: say
    so. Only then: with a settings file or the new names, an old name left by another tool
    must not stop the code location from loading."""
    if environ.get("CTO_DAGSTER_CONFIG") or environ.get("CTO_DAGSTER_REPOSITORY"):
        return
    former = [
        (f"CTO_{name}", f"CTO_DAGSTER_{name}")
        for name in _RENAMED_SETTINGS
        if f"CTO_{name}" in environ and f"CTO_DAGSTER_{name}" not in environ
    ]
    if former:
        renames = ", ".join(f"{old} is now {new}" for old, new in former)
        raise SettingsError(f"❌ renamed settings: {renames} (docs/configuration.md)")


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """`CTO_DAGSTER_KIND=kubernetes` (set by the Helm values) switches every project to pods."""
    environ = os.environ if environ is None else environ
    _refuse_former_names(environ)
    if environ.get("CTO_DAGSTER_CONFIG"):
        settings = load_yaml_settings(Path(environ["CTO_DAGSTER_CONFIG"]))
    elif environ.get("CTO_DAGSTER_REPOSITORY"):
        settings = _settings_from_env(environ)
    else:
        settings = demo_settings(Path(environ.get("CTO_DAGSTER_DEMO_DIR", DEFAULT_DEMO_DIR)))
    kind = environ.get("CTO_DAGSTER_KIND")
    if kind:
        if kind not in ("local", "kubernetes"):
            raise SettingsError(f"❌ CTO_DAGSTER_KIND must be local or kubernetes, not {kind!r}")
        settings = Settings(
            projects=[p.model_copy(update={"kind": kind}) for p in settings.projects]
        )
    for project in settings.projects:
        if project.kind == "kubernetes" and _is_ssh(project.repository):
            raise SettingsError(
                f"❌ project {project.name}: {project.repository} is an SSH URL; on Kubernetes "
                "the image has no ssh client or keys. Use the https URL and the NAME of the "
                "token's variable in git.token_env (a Secret in the pod's environment)."
            )
    return settings
