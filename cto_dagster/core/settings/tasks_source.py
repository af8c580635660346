"""A project's tasks file, read from its repository at one commit (fetched into the machine's
object cache, or pinned by the run that planned it), and planned."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from cto_dagster.core.git.command import GitError, git_environment
from cto_dagster.core.git.files import read_files_at
from cto_dagster.core.planning.planner import ExecutionPlan, plan_tasks_file
from cto_dagster.core.settings.models import ProjectSettings, SettingsError
from cto_dagster.core.taskmaster import TasksFileError, find_tags
from cto_dagster.core.taskmaster.complexity import report_path


def _cache_root(environ: Mapping[str, str]) -> Path:
    configured = environ.get("CTO_DAGSTER_CACHE")
    if configured:
        return Path(configured)
    return Path(tempfile.gettempdir()) / f"cto-dagster-cache-{os.getuid()}"


# The step processes of a run re-load the code location: the run's process exports the commits it
# planned from in this variable (JSON: "<repository> <branch>" -> commit), so that steps plan from
# the same tasks file without fetching it again, even if the branch moved meanwhile.
PINNED_COMMITS_ENV = "CTO_DAGSTER_TASKS_COMMITS"
_planned_from: dict[str, str] = {}


def planned_commits() -> dict[str, str]:
    """The commits this process planned its projects from, by "<repository> <branch>"."""
    return dict(_planned_from)


def planned_commits_pin() -> str | None:
    """The value of PINNED_COMMITS_ENV for this process's step processes (None: nothing planned
    from a repository)."""
    return json.dumps(_planned_from, sort_keys=True) if _planned_from else None


def tasks_source(repository: str, branch: str) -> str:
    """A tasks file's repository and branch as PINNED_COMMITS_ENV names them."""
    return f"{repository} {branch}"


def planned_commit(project: ProjectSettings) -> str | None:
    """The commit this process planned the project from (None: a local tasks file, or not
    planned here)."""
    return (
        None
        if project.tasks_path
        else _planned_from.get(tasks_source(project.repository, project.base_branch))
    )


def _pinned_commits(environ: Mapping[str, str]) -> dict[str, str]:
    try:
        pins = json.loads(environ.get(PINNED_COMMITS_ENV) or "{}")
    except ValueError:
        return {}
    if not isinstance(pins, dict):
        return {}
    return {k: v for k, v in pins.items() if isinstance(k, str) and isinstance(v, str)}


def _files_at_commit(root: Path, commit: str, files: Mapping[str, bytes | None]) -> Path:
    """The files read at a commit, in a folder of their own: written once, renamed into place,
    never rewritten, so concurrent loads never read each other's half-written files."""
    checkout = root / commit
    if checkout.is_dir():
        return checkout
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".files-", dir=root))
    for relative, content in files.items():
        if content is not None:
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
    try:
        staging.rename(checkout)
    except OSError:  # another process put the same files there first
        shutil.rmtree(staging, ignore_errors=True)
    return checkout


def plan_project(
    project: ProjectSettings,
    git_env: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    record: bool = True,
) -> ExecutionPlan:
    """Plan a project from its tasks file: a local override, or the file on the base branch
    (`record`: remember the commit as the one this process planned from)."""
    environ = os.environ if environ is None else environ
    if project.tasks_path:
        return _plan(project, project.tasks_path, environ)
    cache = _mirror(project, environ)
    env = git_environment(project.identity, git_env)
    source = tasks_source(project.repository, project.base_branch)
    try:
        commit, files = read_files_at(
            project.repository,
            project.base_branch,
            _wanted(project),
            cache / "mirror",
            env,
            commit=_pinned_commits(environ).get(source),
        )
    except GitError as exc:
        raise SettingsError(f"❌ project {project.name}: {exc}") from None
    if record:
        _planned_from[source] = commit
    if files[project.tasks_file] is None:
        raise SettingsError(
            f"❌ TaskMaster tasks.json not found: {project.tasks_file} on branch "
            f"{project.base_branch} of {project.repository} (project {project.name})"
        )
    try:  # TaskMaster's complexity reports, at the same commit (no second fetch)
        _, reports = read_files_at(
            project.repository,
            project.base_branch,
            [report_path(tag) for tag in _tags_in(files[project.tasks_file])],
            cache / "mirror",
            env,
            commit=commit,
        )
    except GitError:
        reports = {}
    checkout = _files_at_commit(cache / "files", commit, {**files, **reports})
    return _plan(project, checkout / project.tasks_file, environ)


def _mirror(project: ProjectSettings, environ: Mapping[str, str]) -> Path:
    return _cache_root(environ) / hashlib.sha256(project.repository.encode()).hexdigest()[:16]


def _wanted(project: ProjectSettings) -> list[str]:
    """The files a plan reads at the base branch's commit."""
    wanted = [project.tasks_file]
    if project.tasks_file == ".taskmaster/tasks/tasks.json":
        wanted += [".taskmaster/state.json", ".taskmaster/config.json"]
    return wanted


def tasks_files_at(
    project: ProjectSettings,
    git_env: Mapping[str, str] | None = None,
    commit: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[str, str]:
    """The commit of the base branch (fetched now; or `commit`, read from the object cache) and
    a digest of the files a plan reads there: two commits with one digest plan the same tasks.
    Records nothing (see `planned_commits`)."""
    environ = os.environ if environ is None else environ
    env = git_environment(project.identity, git_env)
    try:
        found, files = read_files_at(
            project.repository,
            project.base_branch,
            _wanted(project),
            _mirror(project, environ) / "mirror",
            env,
            commit=commit,
        )
    except GitError as exc:
        raise SettingsError(f"❌ project {project.name}: {exc}") from None
    digest = hashlib.sha256()
    for path in sorted(files):
        content = files[path]
        digest.update(f"{path}\0{-1 if content is None else len(content)}\0".encode())
        digest.update(content or b"")
    return found, digest.hexdigest()


def _tags_in(content: bytes | None) -> list[str]:
    """The tags of a tasks file, or none when it cannot be read (planning reports why)."""
    try:
        return list(find_tags(json.loads(content or b""))[1])
    except (ValueError, TasksFileError, RecursionError):
        return []


def _plan(project: ProjectSettings, path: str | Path, environ: Mapping[str, str]):
    return plan_tasks_file(
        path,
        include_all=project.include_all,
        environ=environ,
        tags=project.planned_tags,
        all_tags=project.all_tags,
    )
