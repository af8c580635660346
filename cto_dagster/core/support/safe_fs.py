"""Reading, copying and removing trees an agent made, never following what it planted.

Every walk goes through directory file descriptors, one level at a time (`openat` with
`O_NOFOLLOW`): a link is seen as a link, never entered, a FIFO is never opened for reading in a
way that blocks, and a folder swapped for a link between two looks is refused, not followed. The
walks are iterative and hold two descriptors whatever the depth (a level up is `..` of the
current folder, checked to be the folder we came from), so a tree of any depth is copied or
removed (Python 3.11's `shutil.rmtree` recurses, and fails on a thousand nested folders).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
MAX_PATH_BYTES = 4000  # git cannot use longer paths (PATH_MAX is 4096)


class TreeProblem(Exception):
    """What an agent left cannot be read safely or within the limits; the message says why."""


def _identity(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def open_dir(parent: int, name: str) -> int:
    """A folder below `parent`, never through a link; a folder we own but may not read (an
    agent's `chmod 000`) is made readable first, through an `O_PATH` descriptor (no link
    followed either)."""
    try:
        return os.open(name, _DIR, dir_fd=parent)
    except PermissionError:
        if not hasattr(os, "O_PATH"):  # not Linux: lchmod, which never follows a link
            os.chmod(name, 0o700, dir_fd=parent, follow_symlinks=False)
            return os.open(name, _DIR, dir_fd=parent)
        handle = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
        try:
            os.chmod(f"/proc/self/fd/{handle}", 0o700)
        finally:
            os.close(handle)
        return os.open(name, _DIR, dir_fd=parent)


def _up(fd: int, expected: tuple[int, int]) -> int:
    """The folder above `fd`, which must be the one we came from (else the tree was moved)."""
    parent = os.open("..", _DIR, dir_fd=fd)
    if _identity(parent) != expected:
        os.close(parent)
        raise TreeProblem("the tree changed while it was read (a folder was moved)")
    return parent


# ------------------------------------------------------------------------------------ removing


def remove_tree(path: Path) -> bool:
    """Remove `path` and everything below it, at any depth, without following links (a link is
    removed, not its target). Never raises: returns False when something was left."""
    try:
        parent = os.open(path.parent, _DIR)
    except OSError:
        return False
    try:
        return _remove_below(parent, path.name)
    except (OSError, TreeProblem):
        return False
    finally:
        os.close(parent)


def _remove_below(parent: int, name: str) -> bool:
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return True
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=parent)
        return True
    fd = open_dir(parent, name)
    # each level: (name in its parent, identity, sub-folders still to remove)
    stack: list[tuple[str, tuple[int, int], list[str]]] = [(name, _identity(fd), [])]
    above = _identity(parent)
    complete = True
    try:
        stack[-1][2].extend(_clear_files(fd))
        while stack:
            current, _ident, pending = stack[-1]
            if pending:
                child = pending.pop()
                try:
                    child_fd = open_dir(fd, child)
                except OSError:  # no longer a folder (a link now): removed as what it is
                    try:
                        os.unlink(child, dir_fd=fd)
                    except OSError:
                        complete = False
                    continue
                os.close(fd)
                fd = child_fd
                stack.append((child, _identity(fd), []))
                stack[-1][2].extend(_clear_files(fd))
                continue
            stack.pop()
            parent_fd = _up(fd, stack[-1][1] if stack else above)
            os.close(fd)
            fd = parent_fd
            try:
                os.rmdir(current, dir_fd=fd)
            except OSError:
                complete = False
    finally:
        os.close(fd)
    return complete


def _clear_files(fd: int) -> list[str]:
    """Unlink everything in the folder but its sub-folders; return their names."""
    mode = os.fstat(fd).st_mode
    if mode & 0o700 != 0o700:  # entries of a read-only folder cannot be removed
        os.fchmod(fd, mode | 0o700)
    folders = []
    with os.scandir(fd) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                folders.append(entry.name)
            else:
                try:
                    os.unlink(entry.name, dir_fd=fd)
                except FileNotFoundError:
                    pass
    return folders


# ------------------------------------------------------------------------------------ copying


@dataclass
class CopyReport:
    nested_git: list[bytes] = field(default_factory=list)  # folders that held a `.git`
    skipped: list[bytes] = field(default_factory=list)  # FIFOs, sockets, devices: not copied


# What to do with an entry, given its path (bytes, relative), its stat (`fstat` of the opened
# file for a regular file) and a handle: the open file's descriptor (its content may be read
# with `os.pread`), a link's text (bytes), or None for anything else. Answers: None (leave it
# out), "copy", "same" (a file or link: not copied, the caller knows it as it was), "empty" (a
# folder: made, not entered).
Select = Callable[[bytes, os.stat_result, "int | bytes | None"], "str | None"]


def open_below(root: Path, parts: Sequence[str] = ()) -> int:
    """The folder `root/parts...`, no link followed on the way below `root` (nor `root`
    itself, if it is one)."""
    fd = os.open(root, _DIR)
    try:
        for part in parts:
            next_fd = os.open(part, _DIR, dir_fd=fd)
            os.close(fd)
            fd = next_fd
    except BaseException:
        os.close(fd)
        raise
    return fd


def copy_tree(src: Path, dst: Path, select: Select, parts: Sequence[str] = ()) -> CopyReport:
    """Copy what `select` keeps of `src` (or of `src/parts...`, reached without following
    links) into the new folder `dst`: regular files (their content up to the size `select`
    saw, and the executable bit), links as links (their text, never followed), folders; `.git`
    entries are never copied (a nested one is reported). `select` may raise `TreeProblem` (a
    limit) to stop the copy."""
    report = CopyReport()
    src_fd = open_below(src, parts)
    try:
        os.mkdir(dst, 0o700)
        dst_fd = os.open(dst, _DIR)
    except BaseException:
        os.close(src_fd)
        raise
    # each level: (relative path, source identity, sub-folders still to copy)
    stack: list[tuple[bytes, tuple[int, int], list[str]]] = [(b"", _identity(src_fd), [])]
    try:
        stack[-1][2].extend(_copy_level(src_fd, dst_fd, b"", select, report))
        while stack:
            rel, _ident, pending = stack[-1]
            if pending:
                name = pending.pop()
                child_rel = _join(rel, name)
                try:
                    child_src = open_dir(src_fd, name)
                except OSError:
                    raise TreeProblem(
                        f"{_show(child_rel)} stopped being a folder while it was read"
                    ) from None
                os.mkdir(name, 0o755, dir_fd=dst_fd)
                child_dst = os.open(name, _DIR, dir_fd=dst_fd)
                os.close(src_fd)
                os.close(dst_fd)
                src_fd, dst_fd = child_src, child_dst
                stack.append((child_rel, _identity(src_fd), []))
                stack[-1][2].extend(_copy_level(src_fd, dst_fd, child_rel, select, report))
                continue
            stack.pop()
            if not stack:
                break
            parent_src = _up(src_fd, stack[-1][1])
            parent_dst = os.open("..", _DIR, dir_fd=dst_fd)  # ours: no one else writes there
            os.close(src_fd)
            os.close(dst_fd)
            src_fd, dst_fd = parent_src, parent_dst
    finally:
        os.close(src_fd)
        os.close(dst_fd)
    return report


def _join(rel: bytes, name: str) -> bytes:
    return os.fsencode(name) if not rel else rel + b"/" + os.fsencode(name)


def _fits(path: bytes) -> bytes:
    """A path that is copied: git cannot record longer ones."""
    if len(path) > MAX_PATH_BYTES:
        raise TreeProblem(f"a path is longer than {MAX_PATH_BYTES} bytes: {_show(path)}")
    return path


def _show(path: bytes) -> str:
    text = path.decode("utf-8", "backslashreplace")
    return text if len(text) <= 200 else f"{text[:120]}...{text[-60:]}"


def _copy_level(src: int, dst: int, rel: bytes, select: Select, report: CopyReport) -> list[str]:
    """Copy one folder's files and links; return the sub-folders to enter."""
    folders = []
    with os.scandir(src) as entries:
        names = [entry.name for entry in entries]
    for name in sorted(names):
        child = _join(rel, name)
        if name == ".git":
            if rel:
                report.nested_git.append(rel)
            continue
        try:
            st = os.stat(name, dir_fd=src, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(st.st_mode):
            chosen = select(child, st, None)
            if chosen == "copy":
                _fits(child)
                folders.append(name)
            elif chosen == "empty":
                os.mkdir(name, 0o755, dir_fd=dst)
        elif stat.S_ISLNK(st.st_mode):
            target = os.readlink(os.fsencode(name), dir_fd=src)
            if select(child, st, target) == "copy":
                _fits(child)
                os.symlink(target, os.fsencode(name), dir_fd=dst)
        elif stat.S_ISREG(st.st_mode):
            _copy_file(src, dst, name, child, select)
        elif select(child, st, None):
            report.skipped.append(child)
    folders.reverse()  # popped from the end: entered in name order
    return folders


def _copy_file(src: int, dst: int, name: str, rel: bytes, select: Select) -> None:
    try:
        fd = os.open(name, _FILE, dir_fd=src)
    except OSError as exc:
        raise TreeProblem(f"{_show(rel)} cannot be read safely ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise TreeProblem(f"{_show(rel)} stopped being a file while it was read")
        if select(rel, st, fd) != "copy":
            return
        _fits(rel)
        mode = 0o755 if st.st_mode & 0o100 else 0o644
        out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode, dir_fd=dst)
        try:
            _copy_bytes(fd, out, st.st_size)
        finally:
            os.close(out)
    finally:
        os.close(fd)


def _copy_bytes(src: int, dst: int, size: int) -> None:
    """At most `size` bytes from the file's start (what the limits were charged for), in the
    kernel where it can."""
    offset = 0
    while offset < size:
        try:
            copied = os.copy_file_range(src, dst, min(size - offset, 1 << 30), offset_src=offset)
        except (OSError, AttributeError):  # not Linux, or a file system that cannot
            chunk = os.pread(src, min(size - offset, 1 << 20), offset)
            copied = len(chunk)
            os.write(dst, chunk)
        if copied == 0:
            return
        offset += copied


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
