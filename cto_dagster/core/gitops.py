"""Git as the data plane: workspaces, task branches, merges and safe pushes.

Every git call goes through GitPython with an argument list (never a shell string), every branch
name passes `names.check_branch_name`, and credentials reach git through the environment (see
`credentials.py`), never through a URL that could be printed.
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import git

from cto_dagster.core.names import check_base_branch, check_branch_name

_CONTENTION = re.compile(
    r"cannot lock ref|Unable to create '.*\.lock'|failed to update ref|"
    r"index\.lock|shallow file has changed|remote unpack failed|incorrect old value",
    re.IGNORECASE,
)
_REJECTED = re.compile(r"\[rejected\]|stale info|non-fast-forward|fetch first", re.IGNORECASE)
_ZERO_SHA = "0" * 40


class GitError(Exception):
    """A git operation that failed in a way a person can act on."""


class MergeConflict(GitError):
    def __init__(self, branch: str, into: str, paths: list[str]):
        self.branch, self.into, self.paths = branch, into, paths
        shown = ", ".join(paths[:20]) + (
            f" (and {len(paths) - 20} more)" if len(paths) > 20 else ""
        )
        super().__init__(f"❌ Merge conflict when merging {branch} into {into}: {shown}")


class BranchMoved(GitError):
    """The remote branch is not where our last run left it: someone else pushed to it."""


@dataclass(frozen=True)
class Identity:
    name: str = "cto-dagster"
    email: str = "cto-dagster@users.noreply.localhost"


def git_environment(identity: Identity, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """What every git call runs with: no prompts, no user or system config surprises."""
    env = {
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "",
        "SSH_ASKPASS": "",
        "GIT_AUTHOR_NAME": identity.name,
        "GIT_AUTHOR_EMAIL": identity.email,
        "GIT_COMMITTER_NAME": identity.name,
        "GIT_COMMITTER_EMAIL": identity.email,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_PROTOCOL_FROM_USER": "0",
        "GIT_ALLOW_PROTOCOL": "file:git:http:https:ssh",
    }
    env.update(extra or {})
    return env


def is_local_path(url: str) -> bool:
    return "://" not in url and not re.match(r"^[\w.-]+@[\w.-]+:", url)


def retrying(action, attempts: int = 8, what: str = "git"):
    """Run `action`, retrying with jittered backoff while git reports ref or lock contention."""
    delay = 0.1
    for attempt in range(attempts):
        try:
            return action()
        except git.GitCommandError as exc:
            text = f"{exc.stderr or ''} {exc.stdout or ''}"
            if attempt == attempts - 1 or not _CONTENTION.search(text):
                raise
            time.sleep(delay + random.uniform(0, delay))  # noqa: S311 - jitter, not crypto
            delay = min(delay * 2, 3.0)
    raise AssertionError("unreachable")


def _stderr(exc: git.GitCommandError) -> str:
    text = (exc.stderr or "").strip().replace("stderr: ", "").strip("'\" \n")
    return text[-2000:]


class Workspace:
    """One clone of the project's repository, in a folder that belongs to one step."""

    def __init__(self, path: Path, remote: str, env: Mapping[str, str]):
        self.path = path
        self.remote = remote
        self.env = dict(env)
        self.repo: git.Repo | None = None

    @property
    def git(self) -> git.Git:
        assert self.repo is not None, "clone first"
        return self.repo.git

    def clone(self, base_branch: str) -> None:
        check_base_branch(base_branch)
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            # --no-local: a clone of a local path otherwise copies the remote's objects folder file
            # by file, including the quarantine folder of a push arriving meanwhile, and fails
            # when that push completes and removes it (seen with 40 tasks pushing to one remote)
            self.repo = git.Repo.clone_from(
                self.remote,
                self.path,
                env=self.env,
                multi_options=["--no-tags", "--quiet", "--no-local"],
            )
        except git.GitCommandError as exc:
            raise GitError(f"cannot clone the repository: {_stderr(exc)}") from None
        self.repo.git.update_environment(**self.env)
        self.git.config("core.hooksPath", os.devnull)  # the repository's hooks are not ours to run
        try:
            self.git.rev_parse("--verify", "--quiet", f"refs/remotes/origin/{base_branch}")
        except git.GitCommandError:
            raise GitError(f"base branch {base_branch} does not exist in the repository") from None

    def exclude_untracked(self, patterns: Iterable[str]) -> None:
        """gitignore patterns for this clone only (`.git/info/exclude`): files the agent leaves
        that match are not committed. Tracked files are never affected."""
        lines = [p for p in patterns if p.strip()]
        if lines:
            exclude = Path(self.git.rev_parse("--git-path", "info/exclude"))
            exclude = exclude if exclude.is_absolute() else self.path / exclude
            exclude.parent.mkdir(parents=True, exist_ok=True)
            with exclude.open("a", encoding="utf-8") as out:
                out.write("\n# cto-dagster: commit_exclude\n" + "\n".join(lines) + "\n")

    def remote_head(self, branch: str) -> str | None:
        """The branch's commit on the remote right now (None when it does not exist)."""
        check_branch_name(branch)
        try:
            out = retrying(lambda: self.git.ls_remote("--heads", "origin", f"refs/heads/{branch}"))
        except git.GitCommandError as exc:
            raise GitError(f"cannot read the remote: {_stderr(exc)}") from None
        for line in out.splitlines():
            sha, _, ref = line.partition("\t")
            if ref == f"refs/heads/{branch}":
                return sha
        return None

    def rev(self, ref: str) -> str:
        return self.git.rev_parse("--verify", f"{ref}^{{commit}}")

    def has_commit(self, sha: str) -> bool:
        try:
            self.git.cat_file("-e", f"{sha}^{{commit}}")
            return True
        except git.GitCommandError:
            return False

    def cloned_head(self, branch: str) -> str | None:
        """The branch's commit as the clone saw it (the clone fetched every branch)."""
        check_branch_name(branch)
        try:
            return self.rev(f"refs/remotes/origin/{branch}")
        except git.GitCommandError:
            return None

    def start_branch(self, branch: str, start: str) -> None:
        check_branch_name(branch)
        self.git.checkout("--quiet", "--no-track", "-B", branch, start)

    def merge(self, commit: str, label: str, into: str) -> None:
        """Merge `commit` (named `label` in messages) with --no-ff; abort and raise on conflict."""
        message = f"Merge {label} into {into}"
        try:
            self.git.merge("--no-ff", "--no-edit", "-m", message, commit)
        except git.GitCommandError as exc:
            paths = self.conflicted_paths()
            try:
                self.git.merge("--abort")
            except git.GitCommandError:
                self.git.reset("--hard", "--quiet", "HEAD")
            if paths:
                raise MergeConflict(label, into, paths) from None
            raise GitError(f"merging {label} into {into} failed: {_stderr(exc)}") from None

    def conflicted_paths(self) -> list[str]:
        out = self.git.diff("--name-only", "--diff-filter=U")
        return sorted(filter(None, out.splitlines()))

    def predict_conflict(self, left: str, right: str) -> list[str]:
        """Paths that merging two commits would conflict on, without touching any work tree
        (`git merge-tree --write-tree`, git >= 2.38)."""
        try:
            self.git.merge_tree("--write-tree", "--name-only", "--no-messages", left, right)
            return []
        except git.GitCommandError as exc:
            if exc.status != 1:
                raise GitError(
                    f"cannot predict merge of {left} and {right}: {_stderr(exc)}"
                ) from None
            lines = (exc.stdout or "").replace("stdout: ", "").strip("'\n ").splitlines()
            return sorted({line.strip() for line in lines[1:] if line.strip()})

    def commit_all(self, message: str, allow_empty: bool = True) -> str:
        """Commit everything in the work tree (the message is passed as data through a file)."""
        self.git.add("--all")
        message_file = self.path.parent / f".commit-message-{os.getpid()}"
        message_file.write_text(message, encoding="utf-8")
        try:
            args = ["--quiet", "--no-verify", "-F", str(message_file)]
            if allow_empty:
                args.append("--allow-empty")
            self.git.commit(*args)
        finally:
            message_file.unlink(missing_ok=True)
        return self.rev("HEAD")

    def push(self, branch: str, expected_remote: str | None) -> None:
        """Push `branch`, replacing the remote branch only if it is still at `expected_remote`
        (None: it must not exist). Anything else someone pushed is never overwritten."""
        check_branch_name(branch)
        lease = f"--force-with-lease=refs/heads/{branch}:{expected_remote or ''}"
        refspec = f"HEAD:refs/heads/{branch}"
        try:
            retrying(lambda: self.git.push("--quiet", "--porcelain", lease, "origin", refspec))
        except git.GitCommandError as exc:
            text = _stderr(exc) + " " + (exc.stdout or "")
            if _REJECTED.search(text):
                raise BranchMoved(
                    f"the remote refused to update {branch}: it moved since it was last read "
                    "(someone pushed to it)"
                ) from None
            raise GitError(f"push of {branch} failed: {_stderr(exc)}") from None

    def diff_stats(self, base: str, head: str) -> dict[str, int | list[str]]:
        """Files changed, insertions and deletions between two commits."""
        out = self.git.diff("--numstat", "--no-renames", base, head)
        files: list[str] = []
        insertions = deletions = 0
        for line in out.splitlines():
            added, removed, path = line.split("\t", 2)
            files.append(path)
            insertions += int(added) if added.isdigit() else 0
            deletions += int(removed) if removed.isdigit() else 0
        return {"files": sorted(files), "insertions": insertions, "deletions": deletions}

    def changed_files(self, base: str, head: str) -> list[str]:
        out = self.git.diff("--name-only", "--no-renames", base, head)
        return sorted(filter(None, out.splitlines()))

    def merge_base(self, left: str, right: str) -> str:
        return self.git.merge_base(left, right)

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        try:
            self.git.merge_base("--is-ancestor", ancestor, descendant)
            return True
        except git.GitCommandError:
            return False


def read_files_at(
    remote: str,
    branch: str,
    paths: Iterable[str],
    cache: Path,
    env: Mapping[str, str],
    commit: str | None = None,
) -> tuple[str, dict[str, bytes | None]]:
    """Files of a branch of a (possibly remote) repository, through one shallow fetch into a bare
    cache, and the commit they were read at; a path that is not on the branch maps to None.

    Given a `commit` the cache already holds (the one an earlier read returned), nothing is
    fetched: a run's step processes read exactly the plan their run was made from."""
    check_base_branch(branch)
    paths = list(paths)
    for path in paths:
        if path.startswith(("/", "-")) or ".." in Path(path).parts:
            raise GitError(f"refusing path {path!r}: it must be relative to the repository")
    if commit is not None and not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", commit):
        commit = None
    try:
        if not (cache / "HEAD").exists():
            cache.mkdir(parents=True, exist_ok=True)
            git.Git().execute(["git", "init", "--quiet", "--bare", str(cache)], env=dict(env))
        bare = git.Git(str(cache))
        bare.update_environment(**env)
        if commit is None or not _holds_commit(bare, commit):
            # a ref per branch, not FETCH_HEAD, which a concurrent read of another branch rewrites
            ref = f"refs/cto/heads/{branch}"
            retrying(
                lambda: bare.fetch(
                    "--quiet", "--no-tags", "--depth=1", remote, f"+refs/heads/{branch}:{ref}"
                )
            )
            commit = bare.rev_parse(f"{ref}^{{commit}}").strip()
    except git.GitCommandError as exc:
        raise GitError(f"cannot read branch {branch} of the repository: {_stderr(exc)}") from None
    found: dict[str, bytes | None] = {}
    for path in paths:
        try:
            found[path] = bare.show(f"{commit}:{path}", stdout_as_string=False)
        except git.GitCommandError:
            found[path] = None
    return commit, found


def _holds_commit(bare: git.Git, commit: str) -> bool:
    try:
        bare.cat_file("-e", f"{commit}^{{commit}}")
    except git.GitCommandError:
        return False
    return True
