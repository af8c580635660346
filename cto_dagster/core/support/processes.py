"""Telling whether a process recorded earlier is still the same living process: a pid alone is
not enough (pids are reused, machines reboot), so the boot and the process's start time go with
it."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path


def pid_exists(pid: int) -> bool:
    """Whether some process holds `pid` now (one of another user's too). Not that it is the
    process recorded with it: pids are reused (`ProcessIdentity.verdict` tells that)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def start_ticks(pid: int) -> str:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19]


def started_at(pid: int) -> float | None:
    """When the process started, in seconds since the epoch (about a second's precision: the
    boot time /proc gives is whole seconds); None without /proc or the process."""
    ticks = start_ticks(pid)
    try:
        booted = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    if not ticks.isdigit():
        return None
    return booted + int(ticks) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcessIdentity:
    host: str
    pid: int
    boot: str
    started: str

    @classmethod
    def current(cls) -> ProcessIdentity:
        return cls.of(os.getpid())

    @classmethod
    def of(cls, pid: int) -> ProcessIdentity:
        return cls(socket.gethostname(), pid, boot_id(), start_ticks(pid))

    def as_metadata(self) -> dict[str, str]:
        return {
            "host": self.host,
            "pid": str(self.pid),
            "boot_id": self.boot,
            "process_start_ticks": self.started,
        }

    @classmethod
    def from_metadata(cls, data: dict[str, str]) -> ProcessIdentity | None:
        try:
            return cls(data["host"], int(data["pid"]), data["boot_id"], data["process_start_ticks"])
        except (KeyError, ValueError):
            return None

    def verdict(self) -> str:
        """'alive', 'dead' (this host, and the process is gone), or 'elsewhere'."""
        if self.host != socket.gethostname():
            return "elsewhere"
        if self.boot and self.boot != boot_id():
            return "dead"  # the machine restarted since
        return "alive" if start_ticks(self.pid) == self.started and self.started else "dead"
