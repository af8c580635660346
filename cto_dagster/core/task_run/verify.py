"""The project's own checks: what makes a task, or an integration branch, done.

`setup` argv lists prepare a work tree (install its dependencies); `checks` argv lists must each
exit 0. They run the repository's code, which agents wrote, so they run in the agent's sandbox
(its network, its uid, no secret in their environment). Package managers' caches (npm, pip, uv,
cargo, go) are kept per repository on this machine and shared by its steps' setups: writable
while a setup runs (one setup at a time holds them), so the second task's install is fast; a
check gets private, empty caches of its own, so no check can poison the next task's install.

Results are data for the Dagster layer (`Verification.metadata()`), with every output redacted.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from cto_dagster.core.agents import AgentSpec, Sandbox, agent_environment, run_agent
from cto_dagster.core.agents.runner import AgentPlace
from cto_dagster.core.support.workspaces import default_cache_root
from cto_dagster.core.task_run.repository import Repository

OUTPUT_SHOWN = 4000  # characters of a failing command's output kept (metadata, repair prompt)
Argv = tuple[str, ...]
Log = Callable[[str], None]

# variable -> folder below the repository's package cache
CACHE_FOLDERS = {
    "npm_config_cache": "npm",
    "PIP_CACHE_DIR": "pip",
    "UV_CACHE_DIR": "uv",
    "CARGO_HOME": "cargo",
    "GOMODCACHE": "go/mod",
    "GOCACHE": "go/build",
}


@dataclass(frozen=True)
class VerifyPolicy:
    """The project's `verify` settings (a task's `metadata.verify` merged over them)."""

    setup: tuple[Argv, ...] = ()
    checks: tuple[Argv, ...] = ()
    timeout_seconds: float = 1800.0  # each command's
    repair_attempts: int = 1
    integration: bool = True
    integration_repair: str = "off"  # off | agent
    baseline: str = "fail"  # fail | repair | ignore

    @property
    def enabled(self) -> bool:
        return bool(self.checks)


def shown(argv: Sequence[str]) -> str:
    """A command as people read it: the program's name, then its arguments."""
    return " ".join([Path(argv[0]).name, *argv[1:]]) if argv else ""


@dataclass
class CommandResult:
    kind: str  # setup | check
    argv: Argv
    exit_code: int
    seconds: float
    output_tail: str  # redacted
    timed_out: bool = False
    problem: str | None = None  # it could not start

    @property
    def passed(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and self.problem is None

    def verdict(self, timeout: float) -> str:
        if self.passed:
            return "passed"
        if self.timed_out:
            return f"exceeded its timeout of {timeout:g} s"
        return self.problem or f"exited with code {self.exit_code}"

    def as_row(self, timeout: float) -> dict[str, object]:
        return {
            "kind": self.kind,
            "command": shown(self.argv),
            "exit_code": self.exit_code,
            "seconds": round(self.seconds, 3),
            "result": self.verdict(timeout),
            "output_tail": self.output_tail[-OUTPUT_SHOWN:],
        }


@dataclass
class CheckRound:
    """One pass of the checks (and the setup before them) over one tree."""

    label: str  # baseline | after the agent | after repair 1 | integration
    commands: list[CommandResult] = field(default_factory=list)
    timeout: float = 1800.0

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.commands)

    @property
    def failed(self) -> CommandResult | None:
        return next((c for c in self.commands if not c.passed), None)

    def seconds(self, kind: str | None = None) -> float:
        return sum(c.seconds for c in self.commands if kind is None or c.kind == kind)

    def failing_checks(self) -> set[Argv]:
        return {c.argv for c in self.commands if c.kind == "check" and not c.passed}

    def failure_text(self, limit: int = OUTPUT_SHOWN) -> str:
        """The failing command and the end of its output: for people, and for the agent that
        repairs it."""
        failed = self.failed
        if failed is None:
            return ""
        output = failed.output_tail[-limit:]
        return (
            f"`{shown(failed.argv)}` ({failed.kind}, {self.label}) "
            f"{failed.verdict(self.timeout)}. The end of its output:\n\n```\n{output}\n```\n"
        )


@dataclass
class RepairAttempt:
    """The agent ran again with the failing output: recorded in the materialization."""

    attempt: int
    seconds: float
    cost_usd: float | None
    result: str  # passed | what failed

    def as_row(self) -> dict[str, object]:
        return {
            "attempt": self.attempt,
            "seconds": round(self.seconds, 3),
            "cost_usd": self.cost_usd,
            "result": self.result,
        }


@dataclass
class Verification:
    """What the `verified` check of a task (or `integration_verified`) reports."""

    policy: VerifyPolicy
    baseline: CheckRound | None = None
    rounds: list[CheckRound] = field(default_factory=list)
    repairs: list[RepairAttempt] = field(default_factory=list)
    ignored: tuple[Argv, ...] = ()  # checks failing at baseline, with `baseline: ignore`
    seconds_after_agent: float = 0.0  # checks and repairs after the agent (wall clock)

    @property
    def configured(self) -> bool:
        return self.policy.enabled

    @property
    def passed(self) -> bool:
        """Green: every check passed on the final tree (not configured: nothing to fail)."""
        if not self.configured:
            return True
        if not self.rounds:
            return False
        last = self.rounds[-1]
        return all(c.passed or c.argv in self.ignored for c in last.commands)

    @property
    def seconds_before_agent(self) -> float:
        """The baseline's setup and checks."""
        return self.baseline.seconds() if self.baseline else 0.0

    @property
    def baseline_failed(self) -> bool:
        return self.baseline is not None and not self.baseline.passed

    @property
    def repaired(self) -> bool:
        return self.passed and bool(self.repairs)

    def seconds(self, kind: str) -> float:
        rounds = [*([self.baseline] if self.baseline else []), *self.rounds]
        return sum(r.seconds(kind) for r in rounds)

    @property
    def repair_seconds(self) -> float:
        return sum(r.seconds for r in self.repairs)

    def summary(self) -> str:
        if not self.configured:
            return "not configured (no `verify.checks`)"
        names = ", ".join(f"`{shown(c)}`" for c in self.policy.checks)
        if self.passed:
            after = f" after {len(self.repairs)} repair(s)" if self.repairs else ""
            ignored = (
                f" (ignored, failing before the agent too: {', '.join(map(shown, self.ignored))})"
                if self.ignored
                else ""
            )
            return f"passed{after}: {names}{ignored}"
        last = self.rounds[-1] if self.rounds else self.baseline
        why = last.failure_text(400) if last else "not run"
        return f"failed: {why}"

    def metadata(self) -> dict[str, object]:
        """Plain values (the Dagster layer turns them into metadata)."""
        rows = [
            {"round": r.label, **c.as_row(self.policy.timeout_seconds)}
            for r in [*([self.baseline] if self.baseline else []), *self.rounds]
            for c in r.commands
        ]
        return {
            "verified": "passed" if self.passed else "failed",
            "setup_seconds": round(self.seconds("setup"), 3),
            "check_seconds": round(self.seconds("check"), 3),
            "repair_seconds": round(self.repair_seconds, 3),
            "repair_attempts": len(self.repairs),
            "baseline": (
                "not run"
                if self.baseline is None
                else ("passed" if self.baseline.passed else "failed")
            ),
            "commands": rows,
            "repairs": [r.as_row() for r in self.repairs],
        }


def package_cache(repo: Repository) -> Path:
    """The repository's package caches on this machine (root-only until a setup holds them)."""
    key = hashlib.sha256(repo.url.encode()).hexdigest()[:16]
    root = Path(repo.cache_root) if repo.cache_root else default_cache_root()
    folder = root / "packages" / key
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for sub in set(CACHE_FOLDERS.values()):
        (folder / sub).mkdir(mode=0o755, parents=True, exist_ok=True)
    return folder


@contextmanager
def holding(cache: Path):
    """One setup at a time writes the cache (a lock beside it, not in it: the setup cannot
    touch the lock)."""
    lock = cache.with_name(cache.name + ".lock")
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class CheckRunner:
    """Runs the setup and the checks of one step in its work tree, each command in `sandbox`
    like the agent (`spec`'s sandbox settings, its network), never with a secret."""

    def __init__(
        self,
        policy: VerifyPolicy,
        spec: AgentSpec,
        repo: Repository,
        folder: Path,
        work: Path,
        sandbox: Sandbox,
        task_id: str,
        log: Log,
        extra_env: Mapping[str, str] | None = None,
    ):
        self.policy = policy
        self.repo = repo
        self.folder = folder
        self.work = work
        self.sandbox = sandbox
        self.task_id = task_id
        self.log = log
        self.extra_env = dict(extra_env or {})
        self.spec = replace(
            spec,
            preset=None,
            env={},
            env_from={},
            pass_env=(),
            timeout_seconds=policy.timeout_seconds,
        )
        self.home = folder / "checks-home"
        self.home.mkdir(exist_ok=True)
        self.cache = package_cache(repo)
        self._count = 0

    def run(self, label: str) -> CheckRound:
        """The setup (every time: an agent run since may have added a dependency), then every
        check, stopping at the first failure (what follows would only repeat it)."""
        result = CheckRound(label, timeout=self.policy.timeout_seconds)
        for argv in self.policy.setup:
            command = self._command("setup", argv)
            result.commands.append(command)
            if not command.passed:
                return result
        for argv in self.policy.checks:
            command = self._command("check", argv)
            result.commands.append(command)
            if not command.passed:
                break
        return result

    def _environment(self, kind: str) -> dict[str, str]:
        env = agent_environment(
            os.environ, identity=self.repo.identity, home=self.home, denied=self.repo.denied_env
        )
        caches = self.cache if kind == "setup" else self.home / ".cache"
        for name, sub in CACHE_FOLDERS.items():
            env[name] = str(caches / sub)
        # no bytecode in the work tree: it would be committed where not ignored, and a file an
        # agent rewrites within the second at the same size would run its stale bytecode
        env.update(CI="true", PYTHONDONTWRITEBYTECODE="1", CTO_TASK_ID=self.task_id)
        env.update(self.extra_env)
        return env

    def _command(self, kind: str, argv: Argv) -> CommandResult:
        self._count += 1
        spec = replace(self.spec, command=tuple(argv))
        # the caches writable by a setup only, while it holds them
        writable = (self.cache,) if kind == "setup" else ()
        # token files hidden as from the agent: a folder shown to it may hold one
        masked = tuple(Path(f) for f in self.repo.secret_files)
        place = AgentPlace(
            self.folder, self.work, self.home, (), self.sandbox, masked, writable=writable
        )
        values = dict.fromkeys(("prompt_file", "prompt", "task_file"), "")
        values.update(task_id=self.task_id, workdir=str(self.work))
        log_path = self.folder / f"{kind}-{self._count}.log"
        self.log(f"🧪 {kind}: `{shown(argv)}`")
        started = time.monotonic()
        if kind == "setup":
            with holding(self.cache):
                run = run_agent(spec, values, place, self._environment(kind), log_path)
        else:
            run = run_agent(spec, values, place, self._environment(kind), log_path)
        seconds = time.monotonic() - started
        result = CommandResult(
            kind,
            tuple(argv),
            run.exit_code,
            seconds,
            self.repo.redact(run.log_tail),
            run.timed_out,
            self.repo.redact(run.problem.message) if run.problem else None,
        )
        mark = "✅" if result.passed else "❌"
        verdict = result.verdict(self.policy.timeout_seconds)
        self.log(f"{mark} {kind} `{shown(argv)}` {verdict} in {seconds:.1f} s")
        return result
