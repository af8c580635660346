"""Where the agent runs: a sandbox that sees its work tree and little else.

- `bwrap` (bubblewrap, Debian's `bubblewrap`): new process, IPC and UTS namespaces, so
  `/proc` shows only the agent's own processes (not the step's environment, which holds the git
  token); a filesystem of the system's read-only folders, the agent's program, a private /tmp and
  home, and its work tree as the only writable place; inside, the agent is an ordinary user
  (uid 1000) even when the step runs as root.
- `user`: where bubblewrap cannot run (a container without user namespaces) and the step runs as
  root: the agent runs as a uid of its own, held by no other agent meanwhile (`agent_users.py`),
  so it cannot read the step's or another agent's `/proc/<pid>/environ` nor root's files; the work
  tree and its home are handed to that uid (and taken back once every process of it has ended).
- `none`: the agent runs as the step's own user: it could read the step's environment through
  `/proc`, and write the machine's shared object cache that every later step reads (no copy or
  permission can keep a process of the same user out of it). So `none` runs only when the project
  names it, and every step says that risk at start; `auto` never falls back to it (but for the
  built-in demo agent, which runs no model-chosen code).
"""

from __future__ import annotations

import functools
import os
import pwd
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cto_dagster.core.agents.agent_users import AgentUser, chown_tree
from cto_dagster.core.agents.container import (
    container_argv,
    container_name,
    container_runtime,
    reap_orphan_containers,
)

if TYPE_CHECKING:
    from cto_dagster.core.agents.spec import AgentSpec

SANDBOX_MODES = ("auto", "bwrap", "user", "container", "none")
INSIDE_UID = 1000
# read-only system folders every program needs (those that exist are bound)
SYSTEM_PATHS = ("/usr", "/etc", "/opt")
MERGED_USR_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


class SandboxUnavailable(Exception):
    """The sandbox asked for cannot run here; the message says why and what to change."""


@dataclass(frozen=True)
class Sandbox:
    mode: str  # bwrap | user | none
    reason: str  # why this mode, for the step's log
    user: str | None = None  # `user` mode: a named sandbox_user (None: a uid of its own)
    image: str | None = None  # `container` mode: the image
    network: str = "bridge"  # `container` mode: its network
    runtime: str | None = None  # `container` mode: docker or podman

    @property
    def isolates(self) -> bool:
        return self.mode != "none"

    @property
    def leaves_open(self) -> str:
        """What this sandbox does not protect, said by `cto-dagster doctor`."""
        return _LEAVES_OPEN[self.mode]

    @property
    def own_user(self) -> bool:
        """Whether the agent needs a uid of its own (agent_users.agent_user)."""
        return self.mode in ("user", "container")


_LEAVES_OPEN = {
    "bwrap": "this machine's services, where its own network namespace cannot be made (the "
    "agent network line says)",
    "user": "files any user may read: only its uid and /proc keep it apart; this machine's "
    "services, where its own network namespace cannot be made (the agent network line says)",
    "container": "with the bridge network, the host's non-loopback addresses; the image's "
    "readable files",
    "none": "everything the step's user may do: its environment (the git token) through /proc, "
    "other agents, the object cache, daemons that leave the process group",
}


@functools.cache
def bubblewrap_problem() -> str | None:
    """None when bubblewrap can create its namespaces here, else why not."""
    binary = shutil.which("bwrap")
    if binary is None:
        return "bubblewrap is not installed (Debian: apt-get install bubblewrap)"
    probe = [
        binary,
        "--ro-bind",
        "/",
        "/",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-user",
        "--uid",
        str(INSIDE_UID),
        "--die-with-parent",
        "true",
    ]
    try:
        result = subprocess.run(probe, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap could not start: {exc}"
    if result.returncode != 0:
        return f"bubblewrap cannot create namespaces here: {result.stderr.strip()[:300]}"
    return None


NONE_RISK = (
    "the agent runs as the step's own user: it can read the step's environment (the git token) "
    "and write the shared object cache that every later step on this machine reads"
)


def choose_sandbox(
    setting: str = "auto",
    user: str | None = None,
    image: str | None = None,
    network: str = "bridge",
    trusted_program: bool = False,
) -> Sandbox:
    """The sandbox for `setting` (auto | bwrap | user | container | none); raises
    SandboxUnavailable when the one asked for cannot run. `auto` falls back to `none` only for a
    `trusted_program` (the built-in demo agent)."""
    if setting not in SANDBOX_MODES:
        raise SandboxUnavailable(f"unknown sandbox {setting!r}; choose one of {SANDBOX_MODES}")
    if setting == "container":
        return _container_sandbox(image, network)
    if setting == "none":
        return Sandbox("none", f"agent.sandbox is none: {NONE_RISK}")
    problem = bubblewrap_problem()
    if setting == "bwrap" or (setting == "auto" and problem is None):
        if problem:
            raise SandboxUnavailable(f"agent.sandbox is bwrap, but {problem}")
        return Sandbox("bwrap", "bubblewrap: own process namespace, only the work tree writable")
    if os.geteuid() == 0:
        if user is not None:
            try:
                pwd.getpwnam(user)
            except KeyError:
                raise SandboxUnavailable(f"sandbox user {user!r} does not exist") from None
        why = problem or "agent.sandbox is user"
        who = f"the unprivileged user {user} (one agent at a time)" if user else "a uid of its own"
        return Sandbox("user", f"{why}; the agent runs as {who}, its processes ended with it", user)
    if setting == "user":
        raise SandboxUnavailable("agent.sandbox is user, but the step does not run as root")
    if not trusted_program:
        raise SandboxUnavailable(
            f"no sandbox can run here: {problem}, and the step is not root (the `user` sandbox "
            "needs root). Install bubblewrap, or set `agent.sandbox: none` to accept that "
            f"{NONE_RISK}"
        )
    return Sandbox(
        "none",
        f"NO SANDBOX: {problem}, and the step is not root: the agent runs as the step's own "
        "user and could read the step's environment (the git token) through /proc",
    )


def sandbox_for(spec: AgentSpec) -> Sandbox:
    """The sandbox an agent's settings ask for (`choose_sandbox` with its fields)."""
    return choose_sandbox(
        spec.sandbox,
        spec.sandbox_user,
        spec.container_image,
        spec.container_network,
        trusted_program=spec.trusted_program,
    )


def _container_sandbox(image: str | None, network: str) -> Sandbox:
    runtime, problem = container_runtime()
    if runtime is None:
        raise SandboxUnavailable(f"agent.sandbox is container, but {problem}")
    if not image:
        raise SandboxUnavailable("agent.sandbox is container: name agent.container_image")
    if os.geteuid() != 0:
        raise SandboxUnavailable("agent.sandbox is container, but the step does not run as root")
    reason = (
        f"a container of {image} ({Path(runtime).name}; network {network}): own process and "
        "network namespaces, no capability, only the work tree writable"
    )
    return Sandbox("container", reason, image=image, network=network, runtime=runtime)


@dataclass
class Launch:
    """How to start the agent: the argv and the extra Popen arguments; `container` (runtime,
    name) is removed after the agent, whatever happened to its client."""

    argv: list[str]
    popen: dict[str, object] = field(default_factory=dict)
    container: tuple[str, str] | None = None


def _install_roots(executable: Path) -> set[Path]:
    """The folders a program needs beside itself: its own folder, an npm package tree, a
    virtual environment and the Python it was made from, and a script's interpreter."""
    roots: set[Path] = set()
    real = executable.resolve()
    roots.add(real.parent)
    for parent in real.parents:
        if parent.name == "node_modules":
            roots.add(parent)
            break
        config = parent / "pyvenv.cfg"
        if config.is_file():
            roots.add(parent)
            for line in config.read_text(errors="replace").splitlines():
                key, _, value = line.partition("=")
                if key.strip() == "home" and value.strip():
                    roots.add(Path(value.strip()).resolve().parent)
            break
    try:
        with real.open("rb") as handle:
            first = handle.readline(512)
    except OSError:
        return roots
    if first.startswith(b"#!"):
        interpreter = first[2:].decode("utf-8", "replace").split()
        if interpreter and interpreter[0] != "/usr/bin/env" and Path(interpreter[0]).exists():
            roots |= _install_roots(Path(interpreter[0]))
    return roots


def find_program(argv0: str, env: Mapping[str, str], cwd: Path) -> str | None:
    """Where `argv0` is, as the process started in `cwd` will find it: on PATH, or, for a
    relative path such as `.venv/bin/python` (a check's), below `cwd` (the work tree), not
    below this process's own working folder."""
    if os.sep in argv0 and not os.path.isabs(argv0):
        candidate = cwd / argv0
        return str(candidate) if candidate.is_file() and os.access(candidate, os.X_OK) else None
    return shutil.which(argv0, path=env.get("PATH"))


def program_paths(argv0: str, env: Mapping[str, str], cwd: Path | None = None) -> list[Path]:
    """Folders the agent's program needs to run, read-only: the interpreter this package runs
    on (the demo agent), this package, each PATH folder, and where the program really lives
    (an npm package's whole folder, a virtual environment and its base Python)."""
    paths = {Path(sys.prefix), Path(sys.base_prefix), Path(__file__).resolve().parents[2]}
    for entry in (env.get("PATH") or "").split(os.pathsep):
        if entry and Path(entry).is_dir():
            paths.add(Path(entry))
    found = find_program(argv0, env, cwd) if cwd else shutil.which(argv0, path=env.get("PATH"))
    if found:
        paths |= _install_roots(Path(found))
    return sorted(paths)


def command_files(elements: Iterable[str], step_folder: Path, masked: Iterable[Path]) -> list[Path]:
    """The existing files a custom command names by absolute path as whole elements (a script
    outside the work tree: `[python3, /srv/agent.py]`), to be shown to the agent read-only, each
    file alone (never its folder). Never a file of the step's folder (its work tree, home and
    other agents' prompts are given or hidden on purpose) nor a secret file (`masked`), also
    when a link leads there. The caller passes only the literal elements of the configured
    command, never task text, so a task cannot choose a file to read."""
    inside = step_folder.resolve()
    hidden = {Path(os.path.realpath(m)) for m in masked}
    found: list[Path] = []
    for element in elements:
        if not element.startswith("/") or "\x00" in element or not os.path.isfile(element):
            continue
        named, real = Path(element), Path(os.path.realpath(element))
        if any(p == inside or inside in p.parents for p in (named.absolute(), real)):
            continue
        if real in hidden or named in hidden:
            continue
        if named not in found:
            found.append(named)
    return found


def readable_by(path: Path, uid: int, gid: int) -> bool:
    """Whether `uid`:`gid` (the `user` or `container` sandbox's agent, with no other group) may
    read `path` by its mode bits and search every folder above it (ACLs are not read)."""

    def allows(target: Path, bits: tuple[int, int, int]) -> bool:
        info = target.stat()
        if info.st_uid == uid:
            return bool(info.st_mode & bits[0])
        if info.st_gid == gid:
            return bool(info.st_mode & bits[1])
        return bool(info.st_mode & bits[2])

    real = Path(os.path.realpath(path))
    try:
        if not allows(real, (stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH)):
            return False
        return all(
            allows(folder, (stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH)) for folder in real.parents
        )
    except OSError:
        return False


def _bwrap_argv(
    argv: Sequence[str],
    work: Path,
    home: Path,
    read_only: Iterable[Path],
    masked: Iterable[Path] = (),
    writable: Iterable[Path] = (),
) -> list[str]:
    command = [
        shutil.which("bwrap") or "bwrap",
        "--die-with-parent",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--unshare-user",
        "--uid",
        str(INSIDE_UID),
        "--gid",
        str(INSIDE_UID),
        "--hostname",
        "cto-agent",
    ]
    # private, empty places first; what is bound afterwards shows through them
    command += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]  # noqa: S108
    command += ["--tmpfs", "/run", "--tmpfs", "/home", "--tmpfs", "/root"]
    for path in SYSTEM_PATHS:
        if Path(path).is_dir():
            command += ["--ro-bind", path, path]
    for link in MERGED_USR_LINKS:
        if Path(link).is_symlink():
            command += ["--symlink", os.readlink(link), link]
        elif Path(link).is_dir():
            command += ["--ro-bind", link, link]
    resolv = Path("/etc/resolv.conf")
    if resolv.is_symlink() and resolv.resolve().exists():
        target = str(resolv.resolve())
        command += ["--ro-bind", target, target]
    system = tuple(SYSTEM_PATHS) + MERGED_USR_LINKS
    extra = sorted(
        {p for p in read_only if p.exists() and not str(p).startswith(system)},
        key=lambda p: len(p.parts),
    )
    folders = [p for p in extra if p.is_dir()]
    for path in extra:
        if not path.is_dir() and any(folder in path.parents for folder in folders):
            continue  # a file shown already through a folder bound above it
        command += ["--ro-bind", str(path), str(path)]
    for path in (home, work, *writable):
        command += ["--bind", str(path), str(path)]
    for path in masked:  # token files that a read-only folder above would show
        if path.is_file():
            command += ["--ro-bind", "/dev/null", str(path)]
    command += ["--chdir", str(work), "--setenv", "HOME", str(home), "--"]
    return [*command, *argv]


def prepare_launch(
    sandbox: Sandbox,
    argv: Sequence[str],
    step_folder: Path,
    work: Path,
    home: Path,
    read_only: Iterable[Path],
    env: Mapping[str, str],
    masked: Iterable[Path] = (),
    owner: AgentUser | None = None,
    writable: Iterable[Path] = (),
    named_files: Iterable[Path] = (),
) -> Launch:
    """The agent's argv inside the sandbox, with what the sandbox needs done first. `work`,
    `home` and the `read_only` files live in `step_folder`, the step's private folder; `masked`
    files (token files) are hidden even where a folder above them is shown; `owner` is the
    `user` sandbox's uid for this agent; `named_files` (`command_files`: outside the step's
    folder) are bound read-only, each alone (`user` mode: the agent reads them by their modes)."""
    read_only = list(read_only)
    named = list(named_files)
    if sandbox.mode == "bwrap":
        extra = [*read_only, *program_paths(argv[0], env, work), *named]
        return Launch(_bwrap_argv(argv, work, home, extra, masked, writable))
    if sandbox.mode == "container":
        # not in the step's folder: `_give_to` leaves them as they are, the mount is read-only
        return _container_launch(
            sandbox, argv, step_folder, work, home, [*read_only, *named], env, owner,
            tuple(writable),
        )  # fmt: skip
    if sandbox.mode == "user":
        if owner is None:
            raise SandboxUnavailable("the user sandbox needs the agent's own uid (agent_user)")
        _give_to(owner, step_folder, work, home, read_only, tuple(writable))
        return Launch(
            list(argv),
            {"user": owner.uid, "group": owner.gid, "extra_groups": [], "umask": 0o022},
        )
    return Launch(list(argv))


# what only the runtime's client needs, or what the image sets for itself
_CLIENT_ONLY = ("PATH", "DOCKER_CONFIG", "DOCKER_HOST", "CONTAINER_HOST")


def _container_launch(
    sandbox: Sandbox,
    argv: Sequence[str],
    step_folder: Path,
    work: Path,
    home: Path,
    read_only: list[Path],
    env: Mapping[str, str],
    owner: AgentUser | None,
    writable: tuple[Path, ...] = (),
) -> Launch:
    if owner is None or sandbox.runtime is None or sandbox.image is None:
        raise SandboxUnavailable("the container sandbox needs its runtime, image and agent uid")
    _give_to(owner, step_folder, work, home, read_only, writable)
    reap_orphan_containers(sandbox.runtime)
    name = container_name()
    command = container_argv(
        sandbox.runtime,
        sandbox.image,
        argv,
        name=name,
        work=work,
        home=home,
        read_only=read_only,
        env_names=[n for n in env if n not in _CLIENT_ONLY],
        uid=owner.uid,
        gid=owner.gid,
        network=sandbox.network,
        writable=writable,
    )
    return Launch(command, container=(sandbox.runtime, name))


def _give_to(
    owner: AgentUser,
    step_folder: Path,
    work: Path,
    home: Path,
    read_only: Iterable[Path],
    writable: tuple[Path, ...] = (),
) -> None:
    """The work tree and home to the agent's uid (no one else may look in), its prompt and task
    files readable by it alone; the step's folder may be passed through, not listed."""
    # modes first: once given away, only their owner may change them
    for path in (work, home, *writable):
        path.chmod(0o750)
        # group root: the step may still enter every folder (to give the rest away, to start
        # the agent there) without DAC_OVERRIDE; no other agent's uid may
        chown_tree(path, owner.uid, 0)
    step_folder.chmod(0o711)
    for path in read_only:
        if path.is_file() and step_folder in path.parents:
            path.chmod(0o400)
            os.lchown(path, owner.uid, owner.gid)
