"""A uid of its own for each agent of the `user` sandbox, and everything it started ended.

Without namespaces, the uid is the only wall between two agents, and between an agent and what it
leaves running. So each agent gets a uid no other agent holds at the same time (a lock per uid, in
a folder only root may enter), and when it exits, every process of that uid is ended: the
shell's `kill -KILL -1` run as that uid reaches exactly the processes the uid may signal
(double-forked daemons included), repeated until a scan of /proc finds none. Only then does
the orchestrator read the work tree, which it takes back from the uid before the uid is free
again.

The uids come from a range no account uses (`CTO_DAGSTER_AGENT_UIDS`, default 61000-61999,
inside the 65,536 uids a user-namespaced container maps); a uid with an account is skipped, and so
is one with processes that we never handed out (someone else's). Processes left by an agent whose
step was killed are ended when its uid is next handed out.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import random
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cto_dagster.core.support.safe_fs import remove_tree

UIDS_ENV = "CTO_DAGSTER_AGENT_UIDS"
DEFAULT_UIDS = range(61000, 62000)
KILL_ROUNDS = 50


class AgentUserError(Exception):
    """No uid could be had, or the agent's processes could not all be ended."""


@dataclass(frozen=True)
class AgentUser:
    uid: int
    gid: int
    name: str | None  # a named sandbox_user, else None (a uid without an account)


def uid_range() -> range:
    text = os.environ.get(UIDS_ENV, "")
    first, _, last = text.partition("-")
    try:
        low, high = int(first), int(last)
    except ValueError:
        return DEFAULT_UIDS
    if not 1000 <= low <= high < 2**31:
        return DEFAULT_UIDS
    return range(low, high + 1)


def _lock_folder() -> Path:
    """Root's own folder for the uid locks (no agent may take or release one)."""
    base = Path("/run") if os.access("/run", os.W_OK) else Path(tempfile.gettempdir())
    folder = base / f"cto-dagster-agent-uids-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    if folder.is_symlink() or folder.stat().st_uid != os.getuid():
        raise AgentUserError(f"{folder} is not this user's own folder")
    folder.chmod(0o700)
    return folder


def _has_account(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def processes_of(uid: int) -> list[int]:
    """Living pids whose real, effective, saved or filesystem uid is `uid` (zombies, which
    can do nothing more, are left to whoever reaps them)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status", "rb") as status:
                fields = dict(line.split(b":", 1) for line in status if b":" in line)
        except OSError:
            continue  # gone meanwhile
        if fields.get(b"State", b"").strip().startswith(b"Z"):
            continue
        if uid in {int(v) for v in fields.get(b"Uid", b"").split()}:
            found.append(int(entry.name))
    return found


def end_processes_of(uid: int, gid: int) -> int:
    """End every process of `uid`; the number of rounds it took. Raises when some survive."""
    shell = shutil.which("sh") or "/bin/sh"  # its builtin kill: images may have no kill binary
    for rounds in range(1, KILL_ROUNDS + 1):
        if not processes_of(uid):
            return rounds - 1
        # as the uid itself: kill(-1) signals every process the caller may signal, but itself
        subprocess.run(
            [shell, "-c", "kill -KILL -1 2>/dev/null; exit 0"],
            user=uid,
            group=gid,
            extra_groups=[],
            env={"PATH": "/usr/bin:/bin"},
            capture_output=True,
            timeout=10,
            check=False,
        )
        time.sleep(0.01 * rounds)
    left = processes_of(uid)
    if left:
        for pid in left:  # the last word, from root
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if processes_of(uid):
            raise AgentUserError(f"the agent's processes (uid {uid}) could not all be ended")
    return KILL_ROUNDS


@contextmanager
def agent_user(named: str | None = None, trees: Iterable[Path] = ()) -> Iterator[AgentUser]:
    """A uid held by this agent alone while the block runs: a named `sandbox_user` (one agent
    at a time), else a free uid of the range. On the way out, still holding it: whatever runs as
    it is ended, and `trees` (its work tree and home) taken back, before anyone else may get it."""
    folder = _lock_folder()
    if named is not None:
        entry = pwd.getpwnam(named)
        candidates = [entry.pw_uid]
        blocking = True
    else:
        uids = uid_range()
        start = random.randrange(len(uids))  # noqa: S311 - spreading, not secrecy
        candidates = [uids[(start + i) % len(uids)] for i in range(len(uids))]
        blocking = False
    for uid in candidates:
        lock = folder / f"{uid}.lock"
        ours_before = lock.exists()  # a uid we handed out before: what runs as it is ours
        if named is None and (_has_account(uid) or (processes_of(uid) and not ours_before)):
            continue
        handle = lock.open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.close()
            continue
        gid = pwd.getpwnam(named).pw_gid if named else uid
        try:
            end_processes_of(uid, gid)  # a step killed earlier may have left some
            yield AgentUser(uid, gid, named)
            end_processes_of(uid, gid)
            take_back(*trees)
            if named is None:  # a uid of the range is handed to another agent later
                remove_left_files(uid)
        finally:
            handle.close()  # releases the lock
        return
    raise AgentUserError(
        f"no free agent uid in {uid_range().start}-{uid_range().stop - 1} ({UIDS_ENV}): too many "
        "agents at once, or every uid has an account"
    )


def chown_tree(tree: Path, uid: int, gid: int, ignore_errors: bool = False) -> None:
    """chown `tree` and everything below it, links changed and never followed, at any depth
    (an explicit stack, no recursion), without DAC_OVERRIDE: a folder is read while its owner
    is still one that lets us (giving it away), or after it became ours (taking it back)."""
    stack = [str(tree)]
    while stack:
        folder = stack.pop()
        try:
            try:
                entries = list(os.scandir(folder))
                os.lchown(folder, uid, gid)
            except PermissionError:
                os.lchown(folder, uid, gid)
                entries = list(os.scandir(folder))
        except OSError:
            if ignore_errors:
                continue
            raise
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    os.lchown(entry.path, uid, gid)
            except OSError:
                if not ignore_errors:
                    raise


def take_back(*trees: Path) -> None:
    """Give folders the agent owned back to this process's user, once nothing runs as it."""
    for tree in trees:
        chown_tree(tree, os.geteuid(), os.getegid(), ignore_errors=True)


# world-writable places an agent of the `user` sandbox may leave files in for the next holder of
# its uid (another project's agent) to read
SHARED_TEMP = ("/tmp", "/var/tmp", "/dev/shm")  # noqa: S108


def remove_left_files(uid: int, places: Iterable[str] = SHARED_TEMP) -> list[str]:
    """Remove what `uid` left at the top of the shared temporary folders (with all below it)."""
    removed = []
    for place in places:
        try:
            entries = list(os.scandir(place))
        except OSError:
            continue
        for entry in entries:
            try:
                owner = entry.stat(follow_symlinks=False).st_uid
            except OSError:
                continue
            if owner == uid and remove_tree(Path(entry.path)):
                removed.append(entry.path)
    return removed
