"""The orchestrator's repository: one bare object cache per machine and repository URL.

Every step of every run on a machine reads the project's objects from here instead of cloning:
it is fetched when a step needs a commit it lacks (so about once per run), merges are computed in
it without a work tree (`git merge-tree`), what an agent left is recorded into it through an index
file of the step's own, and commits are pushed from it to the configured URL. Its configuration is
written by this module alone; credentials reach it only through the environment of the fetch and
push calls, and only for the configured host.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from pathlib import Path

from cto_dagster.core.git.command import (
    BranchMoved,
    GitError,
    MergeConflict,
    git_output,
    ref_for_branch,
    run_git,
    stderr_text,
)
from cto_dagster.core.support.names import check_base_branch

_REJECTED = re.compile(r"\[rejected\]|stale info|non-fast-forward|fetch first", re.IGNORECASE)
BACKUP_PREFIX = "refs/cto-dagster/replaced/"
_CREDENTIAL_KEY = re.compile(
    r"^(GIT_CONFIG_(COUNT|KEY_\d+|VALUE_\d+)|CTO_DAGSTER_GIT_(TOKEN|HOST)\w*)$"
)
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
# when `maintain` packs the cache: git's own `gc --auto` thresholds
LOOSE_OBJECT_LIMIT = int(os.environ.get("CTO_DAGSTER_CACHE_LOOSE_LIMIT", "6700"))
PACK_LIMIT = 50


# Settings of every bare repository the orchestrator makes: no hook, no fsmonitor, and no
# automatic gc or maintenance (a git call never starts a repack of its own; the cache is packed
# by `maintain`, under its lock).
SAFE_BARE_CONFIG = (
    ("gc.auto", "0"),
    ("maintenance.auto", "false"),
    ("core.hooksPath", "/dev/null"),
    ("core.fsmonitor", "false"),
)


def open_bare(path: Path, env: Mapping[str, str]) -> None:
    """The bare repository at `path` with `SAFE_BARE_CONFIG`: made when missing, and finished
    when an earlier setup was cut short after `git init` (or an older version made it), since
    HEAD alone does not say the settings are there. Every bare repository of the orchestrator
    is set up here; concurrent setups wait for each other (a lock beside the repository)."""
    if (path / "HEAD").exists() and not _missing_settings(path, env):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with (path.parent / f".{path.name}.setup.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (path / "HEAD").exists():
            run_git(["init", "--quiet", "--bare", str(path)], env, cwd=path.parent)
        for key, value in _missing_settings(path, env):
            run_git(["config", key, value], env, git_dir=path)


def _missing_settings(path: Path, env: Mapping[str, str]) -> list[tuple[str, str]]:
    """The settings of `SAFE_BARE_CONFIG` the repository's own config lacks or has otherwise."""
    listed = run_git(["config", "--local", "--list"], env, git_dir=path, check=False).stdout
    have: dict[str, str] = {}
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        have[key.lower()] = value  # the last one wins, as for git
    return [(k, v) for k, v in SAFE_BARE_CONFIG if have.get(k.lower()) != v]


def is_object_id(sha: str | None) -> bool:
    """Whether `sha` is a full object id (SHA-1 or SHA-256), never an option or a ref name."""
    return bool(_SHA.match(sha or ""))


def holds_commit(git_dir: Path, sha: str, env: Mapping[str, str]) -> bool:
    """Whether the repository holds commit `sha` (False for anything but a full object id)."""
    if not is_object_id(sha):
        return False
    result = run_git(["cat-file", "-e", f"{sha}^{{commit}}"], env, git_dir=git_dir, check=False)
    return result.returncode == 0


def cache_path(root: Path, url: str) -> Path:
    return root / hashlib.sha256(url.encode()).hexdigest()[:16] / "objects.git"


class ObjectCache:
    """The bare cache for `url`; `env` is the git environment (credentials included) of the calls
    that talk to the remote."""

    def __init__(self, root: Path, url: str, env: Mapping[str, str]):
        self.url = url
        self.path = cache_path(root, url)
        self.env = dict(env)
        # local calls never need the credentials
        self.local_env = {k: v for k, v in self.env.items() if not _CREDENTIAL_KEY.match(k)}

    @property
    def objects(self) -> Path:
        return self.path / "objects"

    # ---------------------------------------------------------------- creating and fetching

    @contextmanager
    def _locked(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with (self.path.parent / "fetch.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _create(self) -> None:
        open_bare(self.path, self.local_env)

    @contextmanager
    def _locked_if_free(self):
        """The lock when no one holds it (True), else nothing (False): maintenance is never
        worth a wait."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with (self.path.parent / "fetch.lock").open("w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True

    def create(self) -> None:
        if not (self.path / "HEAD").exists():
            with self._locked():
                self._create()

    def fetch(self) -> None:
        """Every branch of the remote, into `refs/remotes/origin/*` (one fetch at a time)."""
        with self._locked():
            self._create()
            try:
                run_git(
                    [
                        "fetch",
                        "--quiet",
                        "--no-tags",
                        "--prune",
                        "--no-write-fetch-head",
                        self.url,
                        "+refs/heads/*:refs/remotes/origin/*",
                    ],
                    self.env,
                    git_dir=self.path,
                )
            except subprocess.CalledProcessError as exc:
                raise GitError(f"cannot fetch the repository: {stderr_text(exc)}") from None

    def ensure(self, commits: Iterable[str | None]) -> None:
        """Fetch when a commit a step needs is missing (a new cache, or work pushed since)."""
        wanted = [c for c in commits if c]
        if not (self.path / "HEAD").exists() or not all(self.has_commit(c) for c in wanted):
            self.fetch()

    # ---------------------------------------------------------------- maintenance

    def loose_objects(self) -> int:
        """About how many loose objects the cache holds: one fan-out folder's count times 256,
        as `git gc --auto` estimates it (cheap whatever the count)."""
        try:
            return len(os.listdir(self.objects / "17")) * 256
        except OSError:
            return 0

    def packs(self) -> int:
        try:
            return sum(1 for n in os.listdir(self.objects / "pack") if n.endswith(".pack"))
        except OSError:
            return 0

    def maintain(self, loose_limit: int | None = None, pack_limit: int | None = None) -> bool:
        """Pack the cache when it has passed `loose_limit` loose objects or `pack_limit` packs,
        under its lock (skipped when another step holds it): old unreachable loose objects are
        pruned (`git prune --expire=2.weeks.ago`: nothing a running step wrote), then loose
        objects and small packs are rolled into bigger packs (`git repack -d --geometric=2`,
        which keeps every object, reachable or not, so nothing a concurrent step needs goes).
        True when it packed."""
        loose_limit = LOOSE_OBJECT_LIMIT if loose_limit is None else loose_limit
        pack_limit = PACK_LIMIT if pack_limit is None else pack_limit
        if self.loose_objects() < loose_limit and self.packs() < pack_limit:
            return False
        with self._locked_if_free() as locked:
            if not locked or not (self.path / "HEAD").exists():
                return False
            try:
                self.git("prune", "--expire=2.weeks.ago")
                self.git("-c", "repack.writeBitmaps=false", "repack", "-d", "-q", "--geometric=2")
            except subprocess.CalledProcessError as exc:
                raise GitError(f"cannot pack the object cache: {stderr_text(exc)}") from None
        return True

    # ---------------------------------------------------------------- reading

    def git(self, *args: str, **kwargs) -> str:
        return git_output(list(args), self.local_env, git_dir=self.path, **kwargs)

    def has_commit(self, sha: str) -> bool:
        return holds_commit(self.path, sha, self.local_env)

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        result = run_git(
            ["merge-base", "--is-ancestor", ancestor, descendant],
            self.local_env,
            git_dir=self.path,
            check=False,
        )
        return result.returncode == 0

    def tree_of(self, commit: str) -> str:
        return self.git("rev-parse", f"{commit}^{{tree}}")

    def remote_heads(self, branches: Iterable[str]) -> dict[str, str | None]:
        """The branches' commits on the remote right now (None: the branch does not exist)."""
        refs: dict[str, str | None] = {}
        for branch in branches:
            refs[check_base_branch(branch)] = None
        self.create()  # git runs in this repository, never in whatever folder we are in
        try:
            out = run_git(
                ["ls-remote", "--heads", self.url, *(f"refs/heads/{b}" for b in refs)],
                self.env,
                git_dir=self.path,
            ).stdout
        except subprocess.CalledProcessError as exc:
            raise GitError(f"cannot read the remote: {stderr_text(exc)}") from None
        for line in out.splitlines():
            sha, _, ref = line.partition("\t")
            name = ref.removeprefix("refs/heads/")
            if name in refs:
                refs[name] = sha
        return refs

    def changed_files(self, base: str, head: str) -> list[str]:
        out = self.git("diff", "--name-only", "--no-renames", base, head)
        return sorted(filter(None, out.splitlines()))

    def own_changes(self, head: str, excluded: list[str]) -> list[str]:
        """Files changed by the commits of `head` that no commit of `excluded` holds, merges
        left out: what a task itself changed, not what it merged from its dependencies."""
        out = self.git(
            "log", "--no-merges", "--no-renames", "--name-only", "--format=", head,
            *(f"^{c}" for c in excluded),
        )  # fmt: skip
        return sorted(set(filter(None, out.splitlines())))

    def diff_stats(self, base: str, head: str) -> dict[str, int | list[str]]:
        out = self.git("diff", "--numstat", "--no-renames", base, head)
        files: list[str] = []
        insertions = deletions = 0
        for line in out.splitlines():
            added, removed, path = line.split("\t", 2)
            files.append(path)
            insertions += int(added) if added.isdigit() else 0
            deletions += int(removed) if removed.isdigit() else 0
        return {"files": sorted(files), "insertions": insertions, "deletions": deletions}

    def merge_base(self, left: str, right: str) -> str:
        return self.git("merge-base", left, right)

    # ---------------------------------------------------------------- writing objects

    def merge_tree(self, left: str, right: str) -> tuple[str | None, list[str]]:
        """Merge two commits without a work tree: (tree, []) when clean, (None, conflicted
        paths) when not (`git merge-tree --write-tree`, git >= 2.38)."""
        result = run_git(
            ["merge-tree", "--write-tree", "--name-only", "-z", "--no-messages", left, right],
            self.local_env,
            git_dir=self.path,
            check=False,
        )
        fields = [f for f in result.stdout.split("\0") if f]
        if result.returncode == 0 and fields:
            return fields[0], []
        if result.returncode == 1:
            return None, sorted(set(fields[1:]))
        raise GitError(f"cannot merge {left[:12]} and {right[:12]}: {stderr_text(result)}")

    def merge_tree_with_markers(self, left: str, right: str) -> str:
        """The tree of merging `right` into `left` as `git merge` leaves the work tree:
        conflicted files hold their markers (`<<<<<<<`, `=======`, `>>>>>>>`)."""
        result = run_git(
            ["merge-tree", "--write-tree", "-z", "--no-messages", left, right],
            self.local_env,
            git_dir=self.path,
            check=False,
        )
        tree = result.stdout.split("\0", 1)[0].strip()
        if result.returncode not in (0, 1) or not tree:
            raise GitError(f"cannot merge {left[:12]} and {right[:12]}: {stderr_text(result)}")
        return tree

    def commit_tree(self, tree: str, parents: Iterable[str], message: str) -> str:
        """A commit object; the message goes through stdin (never a file anyone could redirect)."""
        args = ["commit-tree", tree]
        for parent in parents:
            args += ["-p", parent]
        return self.git(*args, "-F", "-", input=message)

    def read_blob(self, commit: str, path: str) -> bytes | None:
        """A file's content at a commit (None when the commit has no such file)."""
        result = run_git(
            ["cat-file", "blob", f"{commit}:{path}"],
            self.local_env,
            git_dir=self.path,
            check=False,
            text=False,
        )
        return result.stdout if result.returncode == 0 else None

    def tree_with_file(self, commit: str, path: str, content: bytes) -> str:
        """The commit's tree with one file's content replaced (its mode kept), built in a
        throwaway index: no work tree, nothing else touched."""
        blob = (
            run_git(
                ["hash-object", "-w", "--stdin"],
                self.local_env,
                git_dir=self.path,
                input=content,
                text=False,
            )
            .stdout.decode()
            .strip()
        )
        mode = self.git("ls-tree", "--format=%(objectmode)", commit, "--", path) or "100644"
        with tempfile.TemporaryDirectory(prefix="index-", dir=self.path) as scratch:
            env = {**self.local_env, "GIT_INDEX_FILE": str(Path(scratch) / "index")}
            git_output(["read-tree", commit], env, git_dir=self.path)
            git_output(
                ["update-index", "--add", "--cacheinfo", f"{mode},{blob},{path}"],
                env,
                git_dir=self.path,
            )
            return git_output(["write-tree"], env, git_dir=self.path)

    def merge(self, head: str, commit: str, label: str, into: str) -> str:
        """`git merge --no-ff` of `commit` (named `label`) into `head`, as a new commit."""
        tree, conflicts = self.merge_tree(head, commit)
        if tree is None:
            raise MergeConflict(label, into, conflicts)
        return self.commit_tree(tree, [head, commit], f"Merge {label} into {into}")

    # ---------------------------------------------------------------- pushing

    def push(
        self, commit: str, branch: str, expected: str | None, backup: str | None = None
    ) -> None:
        """Push `commit` to `branch` of the configured URL, only if the branch is still at
        `expected` (None: it must not exist); `backup` keeps the commit being replaced under
        a ref of its own, in the same atomic push. Nothing anyone else pushed is overwritten."""
        ref = ref_for_branch(branch)
        args = ["push", "--quiet", "--porcelain", f"--force-with-lease={ref}:{expected or ''}"]
        refspecs = [f"{commit}:{ref}"]
        if backup and expected:
            args.append("--atomic")
            refspecs.append(f"{expected}:{backup}")
        try:
            run_git([*args, self.url, *refspecs], self.env, git_dir=self.path)
        except subprocess.CalledProcessError as exc:
            text = stderr_text(exc) + " " + (exc.stdout or "")
            if _REJECTED.search(text):
                raise BranchMoved(
                    f"the remote refused to update {branch}: it moved since it was last read "
                    "(someone pushed to it)"
                ) from None
            raise GitError(f"push of {branch} failed: {stderr_text(exc)}") from None


def delete_branch(cache: ObjectCache, branch: str, expected: str) -> bool:
    """Delete `branch` on the remote only while it is still at `expected` (a lease): a branch
    someone pushed to since is left alone. True when it was deleted."""
    ref = ref_for_branch(branch)
    result = run_git(
        [
            "push",
            "--quiet",
            "--porcelain",
            f"--force-with-lease={ref}:{expected}",
            cache.url,
            f":{ref}",
        ],
        cache.env,
        git_dir=cache.path,
        check=False,
    )
    return result.returncode == 0


def backup_ref(branch: str, replaced: str) -> str:
    """Where a replaced branch head is kept: `refs/cto-dagster/replaced/<branch>/<commit>`."""
    return f"{BACKUP_PREFIX}{ref_for_branch(branch).removeprefix('refs/heads/')}/{replaced}"
