"""The agent's side: a checkout with a repository of its own.

The agent gets a plain work tree and a `.git` it may use as it likes (status, diff, even commit):
no remote, no credentials, objects borrowed read-only from the cache. After the agent, that `.git`
is never given to git again (its configuration could run programs): its HEAD and branch are read as
files, without following links, and the work tree's content is recorded by the orchestrator
(`inspect.record_work_tree`).
"""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from cto_dagster.core.git.cache import ObjectCache
from cto_dagster.core.git.command import GitError, ref_for_branch, run_git, stderr_text

MAX_READ = 64 * 1024


def read_untrusted(root: Path, parts: Sequence[str], limit: int = MAX_READ) -> bytes | None:
    """A small regular file under `root`, read without following any link on the way (the agent
    may have planted links or pipes); None when it is not there or not a plain file."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        for part in parts[:-1]:
            next_fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = next_fd
        file_fd = os.open(parts[-1], flags, dir_fd=fd)
    except OSError:  # missing, a link, a pipe with no writer, not a folder
        return None
    finally:
        os.close(fd)
    try:
        st = os.fstat(file_fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        chunks, left = [], min(limit, st.st_size)
        while left > 0:
            chunk = os.read(file_fd, min(left, 1 << 26))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(file_fd)


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
        if tip != self.start and not self._descends_from_start(tip):
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
        """Ancestry through a scratch repository that borrows the agent's objects as data."""
        objects = self.git_dir / "objects"
        if objects.is_symlink() or not objects.is_dir():
            return False
        with tempfile.TemporaryDirectory(prefix="cto-ancestry-") as scratch:
            env = self.cache.local_env
            run_git(["init", "--quiet", "--bare", scratch], env, cwd=Path(scratch))
            alternates = Path(scratch) / "objects" / "info" / "alternates"
            alternates.write_text(f"{self.cache.objects}\n{objects}\n", encoding="utf-8")
            result = run_git(
                ["merge-base", "--is-ancestor", self.start, tip],
                env,
                git_dir=Path(scratch),
                check=False,
            )
            return result.returncode == 0
