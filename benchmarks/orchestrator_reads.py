"""What reading an agent's work safely costs (issue 27), beside what it replaced:

    uv run python benchmarks/orchestrator_reads.py [--files 10000] [--size 10000]

A repository of `--files` files of `--size` bytes is checked out as a step's work tree, the agent
adds ten files, and its work is recorded twice: by `record_work_tree` (the copy of what changed,
made through directory descriptors without following links, the limits, the markers, `git add`
of the copy) and by `git add --all` run on the agent's tree itself, as before; both must give the
same tree. Then the step's folder is removed by `remove_tree` and a copy of it by
`shutil.rmtree`, and the shared cache is packed by `ObjectCache.maintain` after 2,000 and 20,000
loose objects were written into it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cto_dagster.core.git.agent_work import _SAFE_CONFIG, record_work_tree
from cto_dagster.core.git.cache import ObjectCache
from cto_dagster.core.git.command import git_environment, run_git
from cto_dagster.core.git.worktree import AgentWorkTree
from cto_dagster.core.support.safe_fs import remove_tree

BRANCH = "feature/task-1-implementation"


def _repository(base: Path, files: int, size: int) -> tuple[ObjectCache, str]:
    env = git_environment()
    seed = base / "seed"
    seed.mkdir()
    run_git(["init", "-q", "-b", "main", str(seed)], env, cwd=seed)
    for i in range(files):
        folder = seed / f"d{i % 100}"
        folder.mkdir(exist_ok=True)
        (folder / f"f{i}.txt").write_bytes(os.urandom(size // 2).hex().encode())
    run_git(["add", "-A"], env, cwd=seed)
    run_git(["commit", "-qm", "files"], env, cwd=seed)
    remote = base / "remote.git"
    run_git(["clone", "-q", "--bare", str(seed), str(remote)], env, cwd=base)
    cache = ObjectCache(base / "cache", str(remote), env)
    cache.fetch()
    return cache, cache.git("rev-parse", "refs/remotes/origin/main")


def _work_tree(base: Path, name: str, cache: ObjectCache, start: str) -> AgentWorkTree:
    tree = AgentWorkTree(base / name / "work", cache, BRANCH, start)
    tree.create()
    for i in range(10):
        (tree.path / f"new{i}.txt").write_text("new\n")
    return tree


def _old_record(base: Path, cache: ObjectCache, tree: AgentWorkTree, start: str) -> str:
    env = {**cache.local_env, "GIT_INDEX_FILE": str(base / "old.index")}
    place = {"git_dir": cache.path, "work_tree": tree.path}
    run_git([*_SAFE_CONFIG, "read-tree", start], env, **place)
    run_git([*_SAFE_CONFIG, "add", "--all"], env, **place)
    run_git([*_SAFE_CONFIG, "ls-files", "-s", "-z"], env, **place)
    run_git([*_SAFE_CONFIG, "diff", "--cached", "-U0", start], env, **place)
    return run_git([*_SAFE_CONFIG, "write-tree"], env, **place).stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=10_000)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="cto-bench-reads-", dir="/var/tmp"))  # a real disk
    try:
        cache, start = _repository(base, args.files, args.size)
        tree = _work_tree(base, "new", cache, start)
        started = time.monotonic()
        recorded = record_work_tree(cache, tree.path, start, base / "new")
        new = time.monotonic() - started
        before = _work_tree(base, "old", cache, start)
        started = time.monotonic()
        old_tree = _old_record(base / "old", cache, before, start)
        old = time.monotonic() - started
        assert old_tree == recorded.tree, "the two ways recorded different trees"
        shutil.copytree(base / "new", base / "copy", symlinks=True)
        started = time.monotonic()
        remove_tree(base / "new")
        removed = time.monotonic() - started
        started = time.monotonic()
        shutil.rmtree(base / "copy")
        removed_old = time.monotonic() - started
        print(
            f"{args.files:,} files of {args.size:,} bytes: record_work_tree {new:.2f} s, "
            f"git add on the agent's tree {old:.2f} s; remove_tree {removed:.2f} s, "
            f"shutil.rmtree {removed_old:.2f} s"
        )
        for count in (2_000, 20_000):
            loose = base / f"loose-{count}"
            loose.mkdir()
            for i in range(count):
                (loose / str(i)).write_text(f"loose object {count} {i}\n")
            listing = "".join(f"{loose / str(i)}\n" for i in range(count))
            run_git(
                ["hash-object", "-w", "--stdin-paths"],
                cache.local_env,
                git_dir=cache.path,
                input=listing,
            )
            started = time.monotonic()
            packed = cache.maintain(loose_limit=1)
            left = sum(1 for _ in cache.objects.glob("??/*"))
            print(
                f"maintain, {count:,} loose objects: {time.monotonic() - started:.2f} s "
                f"(packed: {packed}, loose left: {left})"
            )
        started = time.monotonic()
        cache.maintain()
        print(f"maintain below its threshold: {(time.monotonic() - started) * 1000:.2f} ms")
    finally:
        remove_tree(base)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
