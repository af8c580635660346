"""Recording what the agent left, and checking it before anything is pushed.

What the agent left is never given to git where it lies. It is first copied, through directory
descriptors and without following any link (`safe_fs.copy_tree`), into a private folder of the
step: only what git would record (the files of the starting commit, and the untracked ones git does
not ignore, as `git ls-files --others --exclude-standard` lists them), each file charged against
the task's limits before anything is hashed. That copy is then staged into the orchestrator's cache
through an index file of the step's own (`git --work-tree=<copy> add -A`, with a configuration this
module sets: no hooks, no fsmonitor, no filters). Then:
- nested repositories (an agent's `git init` in a subfolder) would be pushed as links to commits
  the remote never had, and their files lost: their `.git` is left out of the copy, so their files
  are recorded as plain files (the agent's tree is never changed);
- `.taskmaster/` stays as the task started (agents that mark their task done would make every
  dependent's merge conflict): the status the agent set is reported, not committed;
- conflict markers left in files are found, as bytes, whatever `.gitattributes` says and in files
  with NUL bytes, so that the step can fail instead of pushing them.
File names are bytes throughout: any name a file system allows is recorded.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cto_dagster.core.git.cache import ObjectCache
from cto_dagster.core.git.command import GitError, GitTimeout, run_git, stderr_text
from cto_dagster.core.support.limits import Budget, WorkLimits
from cto_dagster.core.support.names import canonical_id
from cto_dagster.core.support.safe_fs import TreeProblem, copy_tree, read_untrusted

LIST_TIMEOUT = 120.0  # listing a work tree's untracked files: seconds even for huge trees
TASKMASTER_DIR = ".taskmaster"
TASKS_FILE = (".taskmaster", "tasks", "tasks.json")
_GITLINK = b"160000"
# a whole line: `<<<<<<<` or `>>>>>>>`, alone or followed by a space and a label
_MARKER_LINE = re.compile(rb"^(<{7}|>{7})(?:[ \t][^\n]*)?\r?$", re.MULTILINE)
_SAFE_CONFIG = (
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "core.untrackedCache=false",
    "-c",
    "core.symlinks=true",
    "-c",
    "core.quotePath=false",
    "-c",
    "safe.directory=*",  # the work tree may belong to the sandbox's user
)


@dataclass
class RecordedTree:
    tree: str
    flattened: list[str] = field(default_factory=list)  # nested repositories, now plain files
    conflict_markers: list[str] = field(default_factory=list)  # files with merge markers
    taskmaster_paths: list[str] = field(default_factory=list)  # edits left out of the commit
    taskmaster_status: str | None = None  # what the agent set its own task's status to
    skipped: list[str] = field(default_factory=list)  # FIFOs, sockets, devices: not recorded


def _text(path: bytes) -> str:
    return path.decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class _Entry:
    mode: bytes
    size: int | None
    sha: str


class _Index:
    """git on the cache with the step's own index file and a given work tree."""

    def __init__(self, cache: ObjectCache, work: Path, index: Path, exclude_file: Path):
        self.cache = cache
        self.work = work
        self.env = {**cache.local_env, "GIT_INDEX_FILE": str(index)}
        self.config = [*_SAFE_CONFIG, "-c", f"core.excludesFile={exclude_file}"]

    def output(
        self, *args: str | bytes, input: bytes | None = None, timeout: float | None = None
    ) -> bytes:
        try:
            return run_git(
                [*self.config, *args],  # type: ignore[list-item]
                self.env,
                git_dir=self.cache.path,
                work_tree=self.work,
                input=input,
                text=False,
                timeout=timeout,
            ).stdout
        except subprocess.CalledProcessError as exc:
            raise GitError(f"cannot record the agent's work: {stderr_text(exc)}") from None

    def git(self, *args: str) -> str:
        return self.output(*args).decode("utf-8", "replace")

    def paths(self, *args: str, timeout: float | None = None) -> list[bytes]:
        return [p for p in self.output(*args, timeout=timeout).split(b"\0") if p]

    def untracked(self) -> list[bytes]:
        """The untracked files git would record, listed by git walking the agent's tree (it
        reads only folders and `.gitignore` files there, no link followed); bounded more
        tightly than other calls, since a FIFO named `.gitignore` would block it."""
        try:
            return self.paths(
                "ls-files", "-z", "--others", "--exclude-standard", timeout=LIST_TIMEOUT
            )
        except GitTimeout:
            raise TreeProblem(
                f"git could not list the work tree's files within {LIST_TIMEOUT:g} s (is a "
                "`.gitignore` a FIFO or a device?)"
            ) from None

    def start_entries(self, start: str) -> dict[bytes, _Entry]:
        """Every path of the starting commit: its mode, size (None: a submodule) and id."""
        entries = {}
        for record in self.paths("ls-tree", "-r", "-l", "-z", "--full-tree", start):
            meta, _, path = record.partition(b"\t")
            mode, _type, sha, size = meta.split()
            entries[path] = _Entry(mode, int(size) if size.isdigit() else None, sha.decode())
        return entries


def _blob_id(size: int, chunks: Iterable[bytes], sha: str) -> str:
    """The id git gives a blob of this content (sha-1, or sha-256 in such a repository)."""
    digest = hashlib.sha256() if len(sha) == 64 else hashlib.sha1()  # noqa: S324 - git's id
    digest.update(b"blob %d\0" % size)
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def _file_chunks(fd: int, size: int) -> Iterable[bytes]:
    offset = 0
    while offset < size:
        chunk = os.pread(fd, min(size - offset, 1 << 20), offset)
        if not chunk:
            return
        offset += len(chunk)
        yield chunk


class _Selection:
    """What git would record of the agent's tree: the starting commit's paths and the untracked
    files git does not ignore; a nested repository (listed as `dir/`) is taken whole."""

    def __init__(self, known: dict[bytes, _Entry], others: list[bytes], budget):
        self.known = known
        self.files = set(known) | {p for p in others if not p.endswith(b"/")}
        self.whole = {p.rstrip(b"/") for p in others if p.endswith(b"/")}
        self.gitlinks = {p for p, entry in known.items() if entry.mode == _GITLINK}
        self.unchanged: list[bytes] = []  # files and links as the starting commit has them
        self.folders: set[bytes] = set()
        for path in (*self.files, *self.whole):
            parts = path.split(b"/")
            for depth in range(1, len(parts)):
                self.folders.add(b"/".join(parts[:depth]))
        self.budget = budget

    def _in_whole(self, path: bytes) -> bool:
        if not self.whole:
            return False
        parts = path.split(b"/")
        return any(b"/".join(parts[:depth]) in self.whole for depth in range(1, len(parts) + 1))

    def _same(self, path: bytes, st, handle) -> bool:
        """The file (or link) is what the starting commit has: same mode, size and content."""
        entry = self.known.get(path)
        if entry is None or entry.size != st.st_size:
            return False
        if isinstance(handle, bytes):
            return (
                entry.mode == b"120000" and _blob_id(len(handle), [handle], entry.sha) == entry.sha
            )
        mode = b"100755" if st.st_mode & 0o100 else b"100644"
        if entry.mode != mode or not isinstance(handle, int):
            return False
        return _blob_id(st.st_size, _file_chunks(handle, st.st_size), entry.sha) == entry.sha

    def select(self, path: bytes, st, handle) -> str | None:
        if stat.S_ISDIR(st.st_mode):
            if path in self.gitlinks:
                return "empty"  # a submodule of the project: left as it was
            return "copy" if path in self.folders or self._in_whole(path) else None
        if path not in self.files and not self._in_whole(path):
            return None
        if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
            if self._same(path, st, handle):
                self.unchanged.append(path)  # not copied: its index entry stays as it is
                return "same"
            self.budget.charge(path, st.st_size)
        return "copy"


def record_work_tree(
    cache: ObjectCache,
    work: Path,
    start: str,
    scratch: Path,
    exclude: Iterable[str] = (),
    task_id: str | None = None,
    tag: str | None = None,
    limits: WorkLimits | None = None,
) -> RecordedTree:
    """Record the agent's work tree on top of `start`; `scratch` is a private folder for the
    copy and the index. Nothing in the work tree is executed, followed or changed, and its `.git`
    is never read. Raises `TreeProblem` (a limit passed, a tree that cannot be read safely)
    before anything is hashed."""
    exclude_file = scratch / "exclude"
    exclude_file.write_text("\n".join(p for p in exclude if p.strip()) + "\n", encoding="utf-8")
    index = _Index(cache, work, scratch / "record.index", exclude_file)
    known = index.start_entries(start)
    index.git("read-tree", start)
    others = index.untracked()
    sizes = {path: entry.size for path, entry in known.items() if entry.size is not None}
    selection = _Selection(known, others, Budget(limits or WorkLimits(), sizes))
    copy = scratch / "recorded"
    try:
        report = copy_tree(work, copy, selection.select)
    except OSError as exc:
        raise TreeProblem(f"the work tree cannot be read safely ({exc})") from None
    index.work = copy
    if selection.unchanged:  # only what changed is copied; the rest is kept as it was
        listed = b"".join(path + b"\0" for path in selection.unchanged)
        index.output("update-index", "--skip-worktree", "-z", "--stdin", input=listed)
    index.git("add", "--all")
    recorded = RecordedTree(
        tree="",
        flattened=[_text(p) for p in report.nested_git if p not in selection.gitlinks],
        skipped=[_text(p) for p in report.skipped],
    )
    changed = index.paths("diff", "--cached", "--name-only", "-z", start, "--", TASKMASTER_DIR)
    recorded.taskmaster_paths = sorted(_text(p) for p in changed)
    if recorded.taskmaster_paths:
        recorded.taskmaster_status = _status_set_by_agent(copy, task_id, tag)
        index.git("reset", "--quiet", start, "--", TASKMASTER_DIR)
    added = index.paths(
        "diff", "--cached", "--name-only", "-z", "--no-renames", "--diff-filter=d", start
    )
    cap = (limits or WorkLimits()).max_file_bytes
    recorded.conflict_markers = _files_with_markers(cache, copy, start, added, known, cap)
    recorded.tree = index.git("write-tree").strip()
    return recorded


def _marker_counts(content: bytes) -> tuple[int, int]:
    opening = closing = 0
    for match in _MARKER_LINE.finditer(content):
        if match.group(1).startswith(b"<"):
            opening += 1
        else:
            closing += 1
    return opening, closing


def _files_with_markers(
    cache: ObjectCache,
    copy: Path,
    start: str,
    paths: list[bytes],
    known: dict[bytes, _Entry],
    cap: int,
) -> list[str]:
    """Files where the agent added both ends of a merge conflict (`<<<<<<<` and `>>>>>>>`
    lines the starting commit's version did not have), read as bytes."""
    found = []
    for path in paths:
        parts = [p.decode("utf-8", "surrogateescape") for p in path.split(b"/")]
        content = read_untrusted(copy, parts, limit=cap)
        if content is None:
            continue
        opening, closing = _marker_counts(content)
        if not (opening and closing):
            continue
        before = b""
        if path in known:
            result = run_git(
                ["cat-file", "blob", f"{start}:".encode() + path],  # type: ignore[list-item]
                cache.local_env,
                git_dir=cache.path,
                check=False,
                text=False,
            )
            before = result.stdout if result.returncode == 0 else b""
        old_opening, old_closing = _marker_counts(before)
        if opening > old_opening and closing > old_closing:
            found.append(_text(path))
    return sorted(found)


def _status_set_by_agent(work: Path, task_id: str | None, tag: str | None) -> str | None:
    if task_id is None:
        return None
    raw = read_untrusted(work, list(TASKS_FILE), limit=64 * 1024 * 1024)
    try:
        data = json.loads(raw.decode("utf-8-sig")) if raw else None
    except (ValueError, RecursionError):
        return None
    lists = []
    if isinstance(data, dict):
        if isinstance(data.get("tasks"), list):
            lists.append(data["tasks"])
        for name, value in data.items():
            if isinstance(value, dict) and isinstance(value.get("tasks"), list):
                if tag is None or name == tag:
                    lists.append(value["tasks"])
    for tasks in lists:
        for task in tasks:
            if isinstance(task, dict) and canonical_id(task.get("id")) == task_id:
                status = task.get("status")
                return str(status)[:40] if status is not None else None
    return None
