"""What a task step pays to get its work tree, for a small and a large repository, beside the plain
clone every step of the original does:

    uv run python benchmarks/workspace.py [--large-mb 100]

Each repository gets a history of that size (binary files rewritten commit after commit, so the
history is large while the checked-out tree stays a few MB, as in real projects). Printed per
repository: the bare remote's size, a plain `git clone` (what the original does for each step),
the first fetch into the per-machine object cache (once per machine), and then what each step
pays: the remote's heads (one `ls-remote`), and its work tree checked out from the cache (objects
borrowed through `alternates`, nothing copied). Goal: the step's part <= 0.5 s for 100 MB,
about the same for 1 MB.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cto_dagster.core.git.cache import ObjectCache
from cto_dagster.core.git.command import Identity, git_environment
from cto_dagster.core.git.worktree import AgentWorkTree

IDENT = ["-c", "user.name=bench", "-c", "user.email=bench@example.com"]


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def make_remote(folder: Path, megabytes: int) -> Path:
    """A bare remote whose history holds about `megabytes` of incompressible data."""
    seed = folder / "seed"
    seed.mkdir(parents=True)
    git("init", "-q", "-b", "main", str(seed))
    files = 20  # the tree: 20 files of (history / commits / 20) bytes
    commits = max(1, min(40, megabytes))
    size = max(1024, megabytes * 1024 * 1024 // (commits * files))
    for commit in range(commits):
        for index in range(files):
            (seed / f"data-{index:02d}.bin").write_bytes(os.urandom(size))
        (seed / "README.md").write_text(f"commit {commit}\n")
        git("add", "--all", cwd=seed)
        git(*IDENT, "commit", "-q", "-m", f"commit {commit}", cwd=seed)
    remote = folder / "remote.git"
    git("clone", "-q", "--bare", str(seed), str(remote))
    shutil.rmtree(seed)
    return remote


def disk_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def measure(folder: Path, megabytes: int, steps: int = 5) -> dict[str, float]:
    remote = make_remote(folder / f"r{megabytes}", megabytes)
    url = f"file://{remote}"
    clone = timed(lambda: git("clone", "-q", url, str(folder / f"clone{megabytes}")))
    cache = ObjectCache(folder / f"cache{megabytes}", url, git_environment(Identity()))
    first_fetch = timed(lambda: cache.ensure([None]))
    head = cache.remote_heads(["main"])["main"]
    heads, checkouts = [], []
    for step in range(steps):
        heads.append(timed(lambda: cache.remote_heads(["main"])))
        tree = AgentWorkTree(
            folder / f"w{megabytes}-{step}", cache, "feature/task-1-implementation", head
        )
        checkouts.append(timed(tree.create))
    return {
        "remote_mb": disk_mb(remote),
        "tree_mb": disk_mb(folder / f"clone{megabytes}")
        - disk_mb(folder / f"clone{megabytes}/.git"),
        "clone": clone,
        "first_fetch": first_fetch,
        "heads": statistics.median(heads),
        "checkout": statistics.median(checkouts),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large-mb", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cto-bench-ws-") as tmp:
        rows = {mb: measure(Path(tmp), mb) for mb in (1, args.large_mb)}
    print(
        f"{'history':>8}{'remote':>9}{'tree':>8}{'git clone':>11}{'1st fetch':>11}"
        f"{'step: heads':>13}{'+ work tree':>13}{'= step':>9}"
    )
    for mb, row in rows.items():
        step = row["heads"] + row["checkout"]
        print(
            f"{mb:>6}MB{row['remote_mb']:>7.0f}MB{row['tree_mb']:>6.1f}MB{row['clone']:>10.2f}s"
            f"{row['first_fetch']:>10.2f}s{row['heads']:>12.3f}s{row['checkout']:>12.3f}s"
            f"{step:>8.3f}s"
        )
    large = rows[args.large_mb]
    step = large["heads"] + large["checkout"]
    print(
        f"\nA step's work tree for {args.large_mb} MB of history: {step:.3f} s "
        f"(goal <= 0.5 s), against {large['clone']:.2f} s for a plain clone per step."
    )
    return 0 if step <= 0.5 else 1


if __name__ == "__main__":
    sys.exit(main())
