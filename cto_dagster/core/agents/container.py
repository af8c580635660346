"""The `container` sandbox: the agent in a container of its own (Docker, or Podman with the same
command line), for where bubblewrap cannot run (macOS, Linux with unprivileged user namespaces
restricted) and a container runtime can.

The container sees its work tree and home (bind mounts, as the agent's own uid), the prompt and
task files and the object cache read-only, a private /tmp, and the image's own filesystem
read-only; it has no capability, cannot gain privileges, has its own process namespace (so nothing
it starts outlives it: the container ends with its init), and its own network namespace, in which
the host's loopback services (the Dagster webserver, code servers) are not there. Secrets reach it
only as the variables its preset or the project names: passed by name (`--env NAME`), their values
read by the runtime's client from its own environment, never written in its command line.

The runtime's default network (a bridge) reaches the internet and also the host's other addresses:
a service listening on all addresses is reachable. `agent.container_network: none` cuts the network
entirely (an agent that needs no model API, or a proxy mounted in).
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

from cto_dagster.core.support.processes import ProcessIdentity

RUNTIMES = ("docker", "podman")
OWNER_LABEL = "cto-dagster.owner"
MEMORY_LIMIT = "8g"
PIDS_LIMIT = "4096"


@functools.cache
def container_runtime() -> tuple[str | None, str | None]:
    """(the runtime's binary, None) when one answers here, else (None, why not)."""
    for name in RUNTIMES:
        binary = shutil.which(name)
        if binary is None:
            continue
        try:
            answer = subprocess.run(
                [binary, "info", "--format", "{{.ServerVersion}}"],
                capture_output=True,
                text=True,
                timeout=20,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"{name} does not answer: {exc}"
        if answer.returncode == 0:
            return binary, None
        return None, f"{name} cannot reach its daemon: {answer.stderr.strip()[:200]}"
    return None, "no container runtime (docker or podman) is installed"


def owner_label() -> str:
    """This step process, so that a later step can tell its containers are orphans."""
    me = ProcessIdentity.current()
    return f"{me.host} {me.pid} {me.boot} {me.started}"


def reap_orphan_containers(runtime: str) -> list[str]:
    """Remove agent containers whose step died (SIGKILL) before it could remove them."""
    listed = subprocess.run(
        [
            runtime,
            "ps",
            "--all",
            "--filter",
            "label=cto-dagster.agent=1",
            "--format",
            f'{{{{.Names}}}}\t{{{{.Label "{OWNER_LABEL}"}}}}',
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    reaped = []
    for line in listed.stdout.splitlines():
        name, _, owner = line.partition("\t")
        parts = owner.split()
        if len(parts) != 4 or not parts[1].isdigit():
            continue
        identity = ProcessIdentity(parts[0], int(parts[1]), parts[2], parts[3])
        if identity.verdict() == "dead":
            remove_container(runtime, name)
            reaped.append(name)
    return reaped


def container_name() -> str:
    return f"cto-agent-{uuid.uuid4().hex[:20]}"


def container_argv(
    runtime: str,
    image: str,
    argv: Sequence[str],
    *,
    name: str,
    work: Path,
    home: Path,
    read_only: Iterable[Path],
    env_names: Iterable[str],
    uid: int,
    gid: int,
    network: str = "bridge",
    writable: Iterable[Path] = (),
) -> list[str]:
    """`runtime run ...` for the agent's `argv` in `image`, as uid:gid, seeing only what is
    named here; the variables in `env_names` are passed by name."""
    command = [
        runtime,
        "run",
        "--rm",
        "--init",
        "--interactive",  # the prompt on standard input, for presets that read it there
        "--name",
        name,
        "--label",
        "cto-dagster.agent=1",
        "--label",
        f"{OWNER_LABEL}={owner_label()}",
        "--user",
        f"{uid}:{gid}",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--pids-limit",
        PIDS_LIMIT,
        "--memory",
        MEMORY_LIMIT,
        "--network",
        network,
        "--read-only",
        "--tmpfs",
        "/tmp:rw,exec,mode=1777",  # noqa: S108 - the container's own
        "--hostname",
        "cto-agent",
        "--workdir",
        str(work),
    ]
    for path in (work, home, *writable):
        command += ["--mount", f"type=bind,source={path},target={path}"]
    for path in sorted({p for p in read_only if p.exists()}):
        command += ["--mount", f"type=bind,source={path},target={path},readonly"]
    for variable in sorted(set(env_names)):
        command += ["--env", variable]
    return [*command, image, *argv]


def remove_container(runtime: str, name: str) -> None:
    """End the container and everything in it (a timeout, or its client ended first)."""
    subprocess.run([runtime, "rm", "--force", name], capture_output=True, timeout=60, check=False)
