"""Running git: an argument list (never a shell string), an environment built from nothing (no
system or global configuration, no prompts), retries while git reports lock contention, and a
bound on every call (a timeout and a memory limit): git reads what agents left, and an agent can
make git block (a FIFO) or grow without end (`/dev/zero`)."""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cto_dagster.core.support.names import check_branch_name

_CONTENTION = re.compile(
    r"cannot lock ref|Unable to create '.*\.lock'|failed to update ref|"
    r"index\.lock|shallow file has changed|remote unpack failed|incorrect old value",
    re.IGNORECASE,
)
# What a child git may inherit from this process: nothing that points it at other repositories,
# configuration, credentials or programs.
_INHERITED = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR", "SYSTEMROOT")
_PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")
_CA_FILES = ("SSL_CERT_FILE", "SSL_CERT_DIR", "GIT_SSL_CAINFO")


# Bounds of every git call. The timeout is generous (a first fetch of a large repository over a
# slow link); the memory bound (RLIMIT_DATA: heap and private writable mappings, not the packs git
# maps read-only) is far above what git needs for a large repository (measured in
# docs/performance.md), and ends a git that an agent made grow without end.
GIT_TIMEOUT_SECONDS = float(os.environ.get("CTO_DAGSTER_GIT_TIMEOUT", "3600"))
GIT_MEMORY_BYTES = int(os.environ.get("CTO_DAGSTER_GIT_MEMORY_MB", "8192")) * 1024 * 1024


class GitError(Exception):
    """A git operation that failed in a way a person can act on."""


class GitTimeout(GitError):
    """A git call that did not finish in time (it was stopped, with what it started)."""


class MergeConflict(GitError):
    def __init__(self, branch: str, into: str, paths: list[str]):
        self.branch, self.into, self.paths = branch, into, paths
        shown = ", ".join(paths[:20]) + (
            f" (and {len(paths) - 20} more)" if len(paths) > 20 else ""
        )
        super().__init__(f"❌ Merge conflict when merging {branch} into {into}: {shown}")


class BranchMoved(GitError):
    """The remote branch is not where our last run left it: someone else pushed to it."""


@dataclass(frozen=True)
class Identity:
    name: str = "cto-dagster"
    email: str = "cto-dagster@users.noreply.localhost"

    def environment(self) -> dict[str, str]:
        return {
            "GIT_AUTHOR_NAME": self.name,
            "GIT_AUTHOR_EMAIL": self.email,
            "GIT_COMMITTER_NAME": self.name,
            "GIT_COMMITTER_EMAIL": self.email,
        }


def git_environment(
    identity: Identity | None = None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """An environment for git built from nothing: only PATH, locale, proxies and CA files pass
    from this process; no system or global configuration is read; git never prompts."""
    env = {
        name: os.environ[name]
        for name in (*_INHERITED, *_PROXIES, *_CA_FILES)
        if name in os.environ
    }
    env.update(
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_TERMINAL_PROMPT="0",
        GIT_ASKPASS="",
        SSH_ASKPASS="",
        GIT_PROTOCOL_FROM_USER="0",
        GIT_ALLOW_PROTOCOL="file:git:http:https:ssh",
        GIT_OPTIONAL_LOCKS="0",
        HOME=os.devnull,  # nothing under a home directory is read (ssh reads its own ~/.ssh)
    )
    env.update((identity or Identity()).environment())
    env.update(extra or {})
    return env


def is_local_path(url: str) -> bool:
    return "://" not in url and not re.match(r"^[\w.-]+@[\w.-]+:", url)


def stderr_text(result: subprocess.CompletedProcess | subprocess.CalledProcessError) -> str:
    text = (result.stderr or "").strip()
    return text[-2000:]


def _shown(args: Sequence[str]) -> str:
    """The git command for a message: its subcommand and arguments, without `-c` settings."""
    words: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "-c":
            skip = True
        else:
            words.append(arg)
    shown = " ".join(["git", *words])
    return shown if len(shown) <= 160 else shown[:157] + "..."


def _bounded(command: list[str], memory: int) -> list[str]:
    """`command` under a memory limit, through util-linux's `prlimit` (no `preexec_fn`: it is
    unsafe in a process with threads, as a step is)."""
    prlimit = shutil.which("prlimit")
    if prlimit is None or memory <= 0:
        return command
    return [prlimit, f"--data={memory}", "--", *command]


def _run_once(
    command: list[str],
    args: Sequence[str],
    env: Mapping[str, str],
    cwd: Path | None,
    input: str | bytes | None,
    text: bool,
    timeout: float,
) -> subprocess.CompletedProcess:
    """One bounded git call; at the timeout, git and everything it started (its own process
    group) are killed and `GitTimeout` names the command."""
    with subprocess.Popen(
        command,
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=text,
        errors="replace" if text else None,  # file names need not be UTF-8: never a crash
        process_group=0,
    ) as process:
        try:
            stdout, stderr = process.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.communicate()
            raise GitTimeout(
                f"{_shown(args)} did not finish within {timeout:g} s and was stopped"
            ) from None
        except BaseException:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def run_git(
    args: Sequence[str],
    env: Mapping[str, str],
    *,
    git_dir: Path | None = None,
    work_tree: Path | None = None,
    cwd: Path | None = None,
    input: str | bytes | None = None,
    check: bool = True,
    text: bool = True,
    retries: int = 8,
    timeout: float | None = None,
    memory: int | None = None,
) -> subprocess.CompletedProcess:
    """git with `args`; `git_dir`/`work_tree` are always explicit, so no repository is ever
    discovered from the current folder. Lock contention is retried with jittered backoff. Every
    call is bounded: `timeout` seconds (`GitTimeout`, a `GitError`) and `memory` bytes of heap
    (git then fails with its own out-of-memory message)."""
    command = ["git"]
    if git_dir is not None:
        command.append(f"--git-dir={git_dir}")
    if work_tree is not None:
        command.append(f"--work-tree={work_tree}")
    command += list(args)
    bounded = _bounded(command, GIT_MEMORY_BYTES if memory is None else memory)
    seconds = GIT_TIMEOUT_SECONDS if timeout is None else timeout
    where = cwd or (git_dir if git_dir is not None else None)
    delay = 0.1
    for attempt in range(retries):
        result = _run_once(bounded, args, env, where, input, text, seconds)
        result.args = command
        if result.returncode == 0 or not check:
            return result
        message = result.stderr if text else result.stderr.decode("utf-8", "replace")
        if attempt == retries - 1 or not _CONTENTION.search(message + str(result.stdout)):
            raise subprocess.CalledProcessError(result.returncode, command, result.stdout, message)
        time.sleep(delay + random.uniform(0, delay))  # noqa: S311 - jitter, not crypto
        delay = min(delay * 2, 3.0)
    raise AssertionError("unreachable")


def git_output(args: Sequence[str], env: Mapping[str, str], **kwargs) -> str:
    return run_git(args, env, **kwargs).stdout.strip()


def ref_for_branch(branch: str) -> str:
    return f"refs/heads/{check_branch_name(branch)}"
