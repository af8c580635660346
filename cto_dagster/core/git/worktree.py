"""The agent's side: a checkout with a repository of its own.

The agent gets a plain work tree and a `.git` it may use as it likes (status, diff, even commit):
no remote, no credentials, objects borrowed read-only from the cache. After the agent, that `.git`
is never given to git again (its configuration could run programs): its HEAD and branch are read as
files, without following links, and the work tree's content is recorded by the orchestrator
(`agent_work.record_work_tree`).
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

from cto_dagster.core.git.cache import ObjectCache
from cto_dagster.core.git.command import GitError, ref_for_branch, run_git, stderr_text
from cto_dagster.core.support.safe_fs import TreeProblem, copy_tree, read_untrusted

MAX_OBJECT_BYTES = 4 * 1024 * 1024 * 1024  # the agent's own commits, compressed
AGENT_DATA_TIMEOUT = 600.0  # git reading what an agent made
_FANOUT = re.compile(rb"^[0-9a-f]{2}$")
_LOOSE = re.compile(rb"^[0-9a-f]{38}$|^[0-9a-f]{62}$")
_PACK = re.compile(rb"^pack-[0-9a-f]{40}(?:[0-9a-f]{24})?\.(?:pack|idx)$")


class AgentWorkTree:
    """The work tree at `path` on `branch` at `start`, objects from `cache`."""

    def __init__(self, path: Path, cache: ObjectCache, branch: str, start: str):
        self.path = path
        self.cache = cache
        self.branch = branch
        self.start = start

    @property
    def git_dir(self) -> Path:
        return self.path / ".git"

    def create(self, exclude: Iterable[str] = ()) -> None:
        env = self.cache.local_env
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            run_git(["init", "--quiet", str(self.path)], env, cwd=self.path.parent)
            (self.git_dir / "objects" / "info" / "alternates").write_text(
                f"{self.cache.objects}\n", encoding="utf-8"
            )
            ref = ref_for_branch(self.branch)
            run_git(["update-ref", ref, self.start], env, git_dir=self.git_dir)
            run_git(["symbolic-ref", "HEAD", ref], env, git_dir=self.git_dir)
            run_git(
                ["read-tree", "--reset", "-u", "HEAD"],
                env,
                git_dir=self.git_dir,
                work_tree=self.path,
                cwd=self.path,
            )
        except subprocess.CalledProcessError as exc:
            raise GitError(f"cannot prepare the work tree: {stderr_text(exc)}") from None
        lines = [p for p in exclude if p.strip()]
        if lines:
            exclude_file = self.git_dir / "info" / "exclude"
            exclude_file.parent.mkdir(parents=True, exist_ok=True)
            with exclude_file.open("a", encoding="utf-8") as out:
                out.write("\n# cto-dagster: commit_exclude\n" + "\n".join(lines) + "\n")

    def problem_after_agent(self) -> str | None:
        """What the agent did to its repository that makes its work unusable, or None."""
        head = read_untrusted(self.path, [".git", "HEAD"])
        if head is None:
            return "the agent removed or replaced the repository's .git"
        head_text = head.decode("utf-8", "replace").strip()
        ref = ref_for_branch(self.branch)
        if head_text != f"ref: {ref}":
            shown = head_text[:80] if head_text.startswith("ref: ") else "(detached HEAD)"
            return (
                f"the agent switched away from {self.branch} (HEAD is now {shown}); agents "
                "must stay on the task's branch"
            )
        tip = self._branch_tip(ref)
        if tip is None:
            return f"the agent deleted the branch {self.branch}"
        try:
            descends = tip == self.start or self._descends_from_start(tip)
        except TreeProblem as exc:
            return f"the agent's commits cannot be checked: {exc}"
        if not descends:
            return (
                f"the agent rewrote the history of {self.branch}: the starting commit "
                f"{self.start[:12]} is no longer in it (reset or rebase)"
            )
        return None

    def _branch_tip(self, ref: str) -> str | None:
        loose = read_untrusted(self.path, [".git", *ref.split("/")])
        if loose is not None:
            return loose.decode("ascii", "replace").strip()
        packed = read_untrusted(self.path, [".git", "packed-refs"], limit=16 * 1024 * 1024)
        for line in (packed or b"").decode("ascii", "replace").splitlines():
            sha, _, name = line.partition(" ")
            if name == ref:
                return sha
        return None

    def _descends_from_start(self, tip: str) -> bool:
        """Ancestry through a scratch repository holding a copy of the agent's own objects
        (loose objects and packs: regular files only, no link followed, at most
        `MAX_OBJECT_BYTES`), borrowing the cache's. The agent's objects folder is never given
        to git: its `info/alternates` could name a FIFO, `/dev/zero` or another repository."""
        with tempfile.TemporaryDirectory(prefix="cto-ancestry-") as scratch:
            env = self.cache.local_env
            run_git(["init", "--quiet", "--bare", scratch], env, cwd=Path(scratch))
            copied = Path(scratch) / "agent-objects"  # no `info/` copied: no alternates
            try:
                copy_tree(self.path, copied, _ObjectFiles().select, [".git", "objects"])
            except OSError:
                return False  # no objects folder (or a link in its place): no commit of its own
            alternates = Path(scratch) / "objects" / "info" / "alternates"
            alternates.write_text(f"{self.cache.objects}\n{copied}\n", encoding="utf-8")
            result = run_git(
                ["merge-base", "--is-ancestor", self.start, tip],
                env,
                git_dir=Path(scratch),
                check=False,
                timeout=AGENT_DATA_TIMEOUT,
            )
            return result.returncode == 0


class _ObjectFiles:
    """Selects the loose objects and packs of an objects folder, within a size budget."""

    def __init__(self, budget: int = MAX_OBJECT_BYTES):
        self.left = budget

    def select(self, path: bytes, st: os.stat_result, _handle: object = None) -> str | None:
        parts = path.split(b"/")
        if stat.S_ISDIR(st.st_mode):
            wanted = len(parts) == 1 and (_FANOUT.match(path) or path == b"pack")
            return "copy" if wanted else None
        if len(parts) != 2 or not stat.S_ISREG(st.st_mode):
            return None
        folder, name = parts
        if not (_LOOSE.match(name) if folder != b"pack" else _PACK.match(name)):
            return None
        self.left -= st.st_size
        if self.left < 0:
            raise TreeProblem(
                f"the agent's repository holds more than {MAX_OBJECT_BYTES // 2**20} MiB of "
                "objects of its own"
            )
        return "copy"
