"""Integration branches of old runs, pruned: each run pushes one branch per level, and nothing
else ever removes them. A project keeps the branches of its last `keep_runs` runs; older ones are
deleted, but only those still at the head their run recorded (a branch a person pushed to, or
one this instance never made, is left as it is). Task branches are never pruned: each task has
one, replaced by later runs (what they replace is kept under a backup ref)."""

from __future__ import annotations

from collections.abc import Mapping

from cto_dagster.core.git.cache import ObjectCache, delete_branch


def prune_integration_branches(
    cache: ObjectCache, recorded: Mapping[str, str], log=print
) -> tuple[list[str], list[str]]:
    """Delete each branch of `recorded` (branch -> the head its run recorded) that is still at
    that head. Returns (deleted, kept because they moved or are gone)."""
    if not recorded:
        return [], []
    cache.create()
    now = cache.remote_heads(list(recorded))
    deleted, kept = [], []
    for branch, head in sorted(recorded.items()):
        if now.get(branch) == head and delete_branch(cache, branch, head):
            deleted.append(branch)
        elif now.get(branch) is not None:
            kept.append(branch)
    if deleted:
        log(f"🧹 Pruned {len(deleted)} integration branches of older runs")
    if kept:
        log(
            f"🧹 Kept {len(kept)} integration branches of older runs that moved since their run "
            f"(someone pushed to them): {', '.join(kept[:10])}"
        )
    return deleted, kept
