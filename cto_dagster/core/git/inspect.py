"""Recording what the agent left, and checking it before anything is pushed.

The work tree's files are staged into the orchestrator's cache through an index file of the
step's own (`git --work-tree=<agent's tree> add -A`, with a configuration this module sets: no
hooks, no fsmonitor, no filters). Then:
- nested repositories (an agent's `git init` in a subfolder) would be pushed as links to commits
  the remote never had, and their files lost: their files are recorded as plain files instead;
- `.taskmaster/` stays as the task started (agents that mark their task done would make every
  dependent's merge conflict): the status the agent set is reported, not committed;
- conflict markers left in files are found, so that the step can fail instead of pushing them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cto_dagster.core.git.cache import ObjectCache
from cto_dagster.core.git.command import GitError, run_git, stderr_text
from cto_dagster.core.git.worktree import read_untrusted
from cto_dagster.core.names import canonical_id

TASKMASTER_DIR = ".taskmaster"
TASKS_FILE = (".taskmaster", "tasks", "tasks.json")
_GITLINK = "160000"
_MARKERS = (re.compile(r"^<{7}( |$)"), re.compile(r"^={7}$"), re.compile(r"^>{7}( |$)"))
_SAFE_CONFIG = (
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "core.untrackedCache=false",
    "-c",
    "core.symlinks=true",
    "-c",
    "safe.directory=*",  # the work tree may belong to the sandbox's user
)


@dataclass
class RecordedTree:
    tree: str
    flattened: list[str] = field(default_factory=list)  # nested repositories, now plain files
    conflict_markers: list[str] = field(default_factory=list)  # files with merge markers
    taskmaster_paths: list[str] = field(default_factory=list)  # edits left out of the commit
    taskmaster_status: str | None = None  # what the agent set its own task's status to


class _Index:
    """git on the cache with the step's own index file and the agent's tree as work tree."""

    def __init__(self, cache: ObjectCache, work: Path, index: Path, exclude_file: Path):
        self.cache = cache
        self.work = work
        self.env = {**cache.local_env, "GIT_INDEX_FILE": str(index)}
        self.config = [*_SAFE_CONFIG, "-c", f"core.excludesFile={exclude_file}"]

    def git(self, *args: str, input: str | None = None) -> str:
        try:
            return run_git(
                [*self.config, *args],
                self.env,
                git_dir=self.cache.path,
                work_tree=self.work,
                input=input,
            ).stdout
        except subprocess.CalledProcessError as exc:
            raise GitError(f"cannot record the agent's work: {stderr_text(exc)}") from None

    def gitlinks(self) -> dict[str, str]:
        out = self.git("ls-files", "-s", "-z")
        links = {}
        for entry in filter(None, out.split("\0")):
            meta, _, path = entry.partition("\t")
            mode, sha, _stage = meta.split(" ")
            if mode == _GITLINK:
                links[path] = sha
        return links


def record_work_tree(
    cache: ObjectCache,
    work: Path,
    start: str,
    scratch: Path,
    exclude: Iterable[str] = (),
    task_id: str | None = None,
    tag: str | None = None,
) -> RecordedTree:
    """Record the agent's work tree on top of `start`; `scratch` is a private folder for the
    index. Nothing in the work tree is executed, and its `.git` is never read."""
    exclude_file = scratch / "exclude"
    exclude_file.write_text("\n".join(p for p in exclude if p.strip()) + "\n", encoding="utf-8")
    index = _Index(cache, work, scratch / "record.index", exclude_file)
    index.git("read-tree", start)
    before = index.gitlinks()
    index.git("add", "--all")
    flattened = _flatten_nested_repositories(index, before)
    recorded = RecordedTree(tree="", flattened=flattened)
    changed = index.git("diff", "--cached", "--name-only", "-z", start, "--", TASKMASTER_DIR)
    recorded.taskmaster_paths = sorted(filter(None, changed.split("\0")))
    if recorded.taskmaster_paths:
        recorded.taskmaster_status = _status_set_by_agent(work, task_id, tag)
        index.git("reset", "--quiet", start, "--", TASKMASTER_DIR)
    recorded.conflict_markers = _files_with_markers(
        index.git("diff", "--cached", "-U0", "--no-color", "--no-ext-diff", start)
    )
    recorded.tree = index.git("write-tree").strip()
    return recorded


def _flatten_nested_repositories(index: _Index, before: dict[str, str]) -> list[str]:
    """A folder the agent made a repository of becomes plain files (its own `.git` removed from
    the agent's tree, which is discarded after the step anyway)."""
    flattened: list[str] = []
    for _round in range(20):  # nested inside nested: a few rounds at most
        new = [p for p, sha in index.gitlinks().items() if before.get(p) != sha]
        if not new:
            return flattened
        for path in new:
            nested_git = index.work / path / ".git"
            if nested_git.is_symlink() or nested_git.is_file():
                nested_git.unlink()
            elif nested_git.is_dir():
                shutil.rmtree(nested_git)
            index.git("rm", "--cached", "--quiet", "-r", "--", path)
            index.git("add", "--all", "--", path)
            flattened.append(path)
    raise GitError("the agent left repositories nested too deeply to record")


def _files_with_markers(diff: str) -> list[str]:
    """Files whose added lines hold both ends of a merge conflict (`<<<<<<<` and `>>>>>>>`)."""
    found: dict[str, set[int]] = {}
    current = None
    for line in diff.splitlines():
        if line.startswith("+++ "):
            current = line[6:] if line.startswith("+++ b/") else None
        elif current and line.startswith("+") and not line.startswith("+++"):
            for index, marker in enumerate(_MARKERS):
                if marker.match(line[1:]):
                    found.setdefault(current, set()).add(index)
    return sorted(path for path, kinds in found.items() if {0, 2} <= kinds)


def _status_set_by_agent(work: Path, task_id: str | None, tag: str | None) -> str | None:
    if task_id is None:
        return None
    raw = read_untrusted(work, list(TASKS_FILE), limit=64 * 1024 * 1024)
    try:
        data = json.loads(raw.decode("utf-8-sig")) if raw else None
    except (ValueError, RecursionError):
        return None
    lists = []
    if isinstance(data, dict):
        if isinstance(data.get("tasks"), list):
            lists.append(data["tasks"])
        for name, value in data.items():
            if isinstance(value, dict) and isinstance(value.get("tasks"), list):
                if tag is None or name == tag:
                    lists.append(value["tasks"])
    for tasks in lists:
        for task in tasks:
            if isinstance(task, dict) and canonical_id(task.get("id")) == task_id:
                status = task.get("status")
                return str(status)[:40] if status is not None else None
    return None
