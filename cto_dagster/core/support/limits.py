"""How much a task may add to the repository, checked while its work is copied out of the
agent's tree, before any of it is hashed into the shared object cache."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cto_dagster.core.support.safe_fs import TreeProblem

MIB = 1024 * 1024


@dataclass(frozen=True)
class WorkLimits:
    max_file_bytes: int = 100 * MIB  # the biggest file a task may add or change
    max_total_bytes: int = 1024 * MIB  # all files it adds or changes, together
    max_files: int = 100_000  # files (and links) it adds


def _size(count: int) -> str:
    for unit, scale in (("GiB", 1024 * MIB), ("MiB", MIB), ("KiB", 1024)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


class Budget:
    """Charges each file of the agent's tree against the limits: a file counts when it is new
    or its size differs from the task's starting commit (`known`: path -> size there)."""

    def __init__(self, limits: WorkLimits, known: Mapping[bytes, int]):
        self.limits = limits
        self.known = known
        self.files = 0
        self.bytes = 0

    def charge(self, path: bytes, size: int) -> None:
        before = self.known.get(path)
        if before == size:
            return
        shown = path.decode("utf-8", "backslashreplace")[:200]
        if size > self.limits.max_file_bytes:
            raise TreeProblem(
                f"{shown} is {_size(size)}, over the largest file a task may add "
                f"({_size(self.limits.max_file_bytes)}, agent.limits.max_file_bytes)"
            )
        self.bytes += size
        if self.bytes > self.limits.max_total_bytes:
            raise TreeProblem(
                f"the files the agent added or changed pass {_size(self.limits.max_total_bytes)} "
                f"together (agent.limits.max_total_bytes; at {shown})"
            )
        if before is None:
            self.files += 1
            if self.files > self.limits.max_files:
                raise TreeProblem(
                    f"the agent added more than {self.limits.max_files:,} files "
                    "(agent.limits.max_files)"
                )
