"""Running git: an argument list (never a shell string), an environment built from nothing (no
system or global configuration, no prompts), and retries while git reports lock contention."""

from __future__ import annotations

import os
import random
import re
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cto_dagster.core.names import check_branch_name

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


class GitError(Exception):
    """A git operation that failed in a way a person can act on."""


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
) -> subprocess.CompletedProcess:
    """git with `args`; `git_dir`/`work_tree` are always explicit, so no repository is ever
    discovered from the current folder. Lock contention is retried with jittered backoff."""
    command = ["git"]
    if git_dir is not None:
        command.append(f"--git-dir={git_dir}")
    if work_tree is not None:
        command.append(f"--work-tree={work_tree}")
    command += list(args)
    delay = 0.1
    for attempt in range(retries):
        result = subprocess.run(
            command,
            env=dict(env),
            cwd=cwd or (git_dir if git_dir is not None else None),
            input=input,
            capture_output=True,
            text=text,
            check=False,
        )
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
