"""Reading a few files of a branch (the tasks file) through one shallow fetch into a bare cache,
so that loading the code location never clones the repository."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

from cto_dagster.core.git.cache import holds_commit, is_object_id, open_bare
from cto_dagster.core.git.command import GitError, run_git, stderr_text
from cto_dagster.core.support.names import check_base_branch


def read_files_at(
    remote: str,
    branch: str,
    paths: Iterable[str],
    cache: Path,
    env: Mapping[str, str],
    commit: str | None = None,
) -> tuple[str, dict[str, bytes | None]]:
    """Files of a branch and the commit they were read at; a path that is not on the branch maps
    to None. Given a `commit` the cache already holds (the one an earlier read returned), nothing
    is fetched: a run's step processes read exactly the plan their run was made from."""
    check_base_branch(branch)
    paths = list(paths)
    for path in paths:
        if path.startswith(("/", "-")) or ".." in Path(path).parts:
            raise GitError(f"refusing path {path!r}: it must be relative to the repository")
    if not is_object_id(commit):
        commit = None
    try:
        open_bare(cache, env)  # the object cache's own setup: safety settings, lock
        if commit is not None and not holds_commit(cache, commit, env):
            _fetch_pinned(remote, branch, commit, cache, env)
        elif commit is None:
            # a ref per branch, not FETCH_HEAD, which a concurrent read of another branch rewrites
            ref = f"refs/cto/heads/{branch}"
            run_git(
                [
                    "fetch",
                    "--quiet",
                    "--no-tags",
                    "--depth=1",
                    remote,
                    f"+refs/heads/{branch}:{ref}",
                ],
                env,
                git_dir=cache,
            )
            commit = run_git(["rev-parse", f"{ref}^{{commit}}"], env, git_dir=cache).stdout.strip()
    except subprocess.CalledProcessError as exc:
        raise GitError(
            f"cannot read branch {branch} of the repository: {stderr_text(exc)}"
        ) from None
    found: dict[str, bytes | None] = {}
    for path in paths:
        result = run_git(
            ["cat-file", "blob", f"{commit}:{path}"], env, git_dir=cache, check=False, text=False
        )
        found[path] = result.stdout if result.returncode == 0 else None
    return commit, found


def _fetch_pinned(
    remote: str, branch: str, commit: str, cache: Path, env: Mapping[str, str]
) -> None:
    """The pinned commit itself (a step pod starts with an empty cache): by id where the server
    allows it, else with the branch's history; never the branch head in its place, since the run
    was planned from this commit."""
    ref = f"refs/cto/pinned/{commit}"
    fetched = run_git(
        ["fetch", "--quiet", "--no-tags", "--depth=1", remote, f"+{commit}:{ref}"],
        env,
        git_dir=cache,
        check=False,
    )
    if fetched.returncode != 0:
        run_git(
            [
                "fetch",
                "--quiet",
                "--no-tags",
                remote,
                f"+refs/heads/{branch}:refs/cto/history/{branch}",
            ],
            env,
            git_dir=cache,
        )
    if not holds_commit(cache, commit, env):
        raise GitError(
            f"the run was planned from commit {commit[:12]} of {branch}, which the repository no "
            "longer has (was the branch force-pushed?); launch a new run"
        )
