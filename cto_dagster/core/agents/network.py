"""What the agent's network reaches: the internet, but none of this machine's own services.

Dagster's webserver has no login: an agent that reaches its GraphQL on 127.0.0.1:3000 can launch
runs. So the agent (sandbox `bwrap` or `user`) gets a network namespace of its own
(`netns_launch.py`): its loopback is its own, and `pasta` (Debian's `passt`) carries its traffic
out through ordinary host sockets, with the gateway not mapped to the host (`--no-map-gw`) and no
port forwarded either way except `allow_host_ports` (the host's loopback ports the agent may
use: a local model stand-in, a proxy). A host socket could still reach this machine through
another of its addresses (a docker bridge, its own eth address) or a neighbour on a private
network, so firewall rules inside the namespace, put in before the agent starts and out of its
reach (it holds no capability there), refuse private and link-local ranges, the machine's own
addresses and its gateways; only DNS to the configured resolvers passes.

- `internet` (default): as above. Where it cannot be had (pasta or iptables missing, no
  namespaces), the agent runs with the host's network and every task start says so, unless
  `required` (then the task does not start).
- `none`: a namespace with only its own loopback (needs no pasta).
- `host`: the machine's network as it is (every start says so).
The `none` sandbox never gets a namespace: an agent running as the step's user could undo it.
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from cto_dagster.core.agents.sandbox import Launch, Sandbox

NETWORK_MODES = ("internet", "none", "host")
LAUNCHER = Path(__file__).with_name("netns_launch.py")
NETWORK_LOG = "network.log"
PRIVATE_V4 = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "224.0.0.0/3",  # multicast and reserved
)
PRIVATE_V6 = ("fc00::/7", "fe80::/10", "ff00::/8", "64:ff9b:1::/48")
# what pasta forwards by default (`auto`) would hand the agent every port the host listens on
PASTA_OPTIONS = (
    "-q",
    "-f",
    "--config-net",
    "--no-map-gw",
    "-t",
    "none",
    "-u",
    "none",
    "-U",
    "none",
)
PROBE_TIMEOUT = 20


class NetworkUnavailable(Exception):
    """The network isolation asked for cannot be had here; the message says why."""


@dataclass(frozen=True)
class Network:
    mode: str  # what the agent gets: internet | none | host
    isolated: bool  # this machine's services are out of its reach
    reason: str  # for the step's log, the launch and doctor
    allow_host_ports: tuple[int, ...] = ()


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def host_addresses() -> set[str]:
    """Every address of this machine (all interfaces, both families), loopback aside."""
    found = set()
    lines = _read("/proc/net/fib_trie").splitlines()
    for previous, line in itertools.pairwise(lines):
        if "/32 host LOCAL" in line:
            found.add(previous.split()[-1])
    for line in _read("/proc/net/if_inet6").splitlines():
        raw = line.split()[0] if line.split() else ""
        if len(raw) == 32:
            found.add(str(ipaddress.IPv6Address(bytes.fromhex(raw))))
    return {a for a in found if not ipaddress.ip_address(a).is_loopback}


def gateways() -> set[str]:
    """The machine's gateways (its router's services are no business of the agent's)."""
    found = set()
    for line in _read("/proc/net/route").splitlines()[1:]:
        fields = line.split()
        if len(fields) > 2 and fields[2] != "00000000":
            found.add(str(ipaddress.IPv4Address(bytes.fromhex(fields[2])[::-1])))
    for line in _read("/proc/net/ipv6_route").splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[4] != "0" * 32:
            found.add(str(ipaddress.IPv6Address(bytes.fromhex(fields[4]))))
    return found


def resolvers() -> list[str]:
    """The name servers of /etc/resolv.conf: DNS to them passes (port 53 only)."""
    found = []
    for line in _read("/etc/resolv.conf").splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            try:
                found.append(str(ipaddress.ip_address(fields[1].split("%")[0])))
            except ValueError:
                continue
    return found


def default_routes() -> list[str]:
    """The families (`4`, `6`) this machine has a default route for: pasta gives the agent's
    namespace the same, and the launcher waits for them."""
    routes = []
    if any(line.split()[1:2] == ["00000000"] for line in _read("/proc/net/route").splitlines()[1:]):
        routes.append("4")
    if any(
        line.startswith("0" * 32 + " 00 ") for line in _read("/proc/net/ipv6_route").splitlines()
    ):
        routes.append("6")
    return routes


def firewall_rules(version: int, refused: Iterable[str], dns: Iterable[str]) -> str:
    """iptables-restore input for the agent's namespace: its own loopback and DNS to the
    resolvers pass; private ranges and `refused` addresses are refused at once."""
    reject = "icmp-admin-prohibited" if version == 4 else "icmp6-adm-prohibited"
    ranges = PRIVATE_V4 if version == 4 else PRIVATE_V6
    lines = [
        "*filter",
        ":OUTPUT ACCEPT [0:0]",
        ":REFUSE - [0:0]",  # at once: a connection is reset, anything else told it is prohibited
        "-A REFUSE -p tcp -j REJECT --reject-with tcp-reset",
        f"-A REFUSE -j REJECT --reject-with {reject}",
        "-A OUTPUT -o lo -j ACCEPT",
    ]
    for server in dns:
        if ipaddress.ip_address(server).version == version:
            for protocol in ("udp", "tcp"):
                lines.append(f"-A OUTPUT -d {server} -p {protocol} --dport 53 -j ACCEPT")
    targets = list(ranges) + sorted(
        a for a in refused if ipaddress.ip_address(a).version == version
    )
    for target in targets:
        lines.append(f"-A OUTPUT -d {target} -j REFUSE")
    return "\n".join([*lines, "COMMIT", ""])


def _ipv6_on() -> bool:
    return Path("/proc/net/if_inet6").exists()


def launcher_config(
    mode: str, allow_host_ports: Sequence[int], step_folder: Path, popen: dict[str, object]
) -> dict[str, object]:
    """What netns_launch.py needs: pasta's options, the rules, the routes to wait for, and the
    user to become (taken over from Popen's user/group for the `user` sandbox)."""
    root = os.geteuid() == 0
    ports = ",".join(str(p) for p in sorted(set(allow_host_ports))) or "none"
    pasta = [*PASTA_OPTIONS, "-T", ports, *(["--runas", "0"] if root else [])]
    refused = host_addresses() | gateways()
    dns = [d for d in resolvers() if not ipaddress.ip_address(d).is_loopback]
    config: dict[str, object] = {
        "mode": mode,
        "pasta": pasta,
        "rules4": firewall_rules(4, refused, dns) if mode == "internet" else "",
        "rules6": firewall_rules(6, refused, dns) if mode == "internet" and _ipv6_on() else "",
        "routes": default_routes(),
        "log": str(step_folder / NETWORK_LOG),
    }
    if "user" in popen:
        config.update(
            uid=popen["user"],
            gid=popen.get("group"),
            groups=list(popen.get("extra_groups") or []),  # type: ignore[call-overload]
            umask=popen.get("umask"),
        )
    return config


def confine(launch: Launch, network: Network, step_folder: Path) -> Launch:
    """`launch` started inside the agent's own network namespace (unchanged when not isolated)."""
    if not network.isolated:
        return launch
    popen = dict(launch.popen)
    config = launcher_config(network.mode, network.allow_host_ports, step_folder, popen)
    for key in ("user", "group", "extra_groups", "umask"):
        popen.pop(key, None)  # the launcher becomes that user once the namespace is ready
    argv = [sys.executable, "-I", "-S", str(LAUNCHER), json.dumps(config), "--", *launch.argv]
    return replace(launch, argv=argv, popen=popen)


def _tools(mode: str) -> str | None:
    if mode == "none":
        return None
    if shutil.which("pasta") is None:
        return "pasta is not installed (Debian: apt-get install passt)"
    for tool in ("iptables-restore", *(["ip6tables-restore"] if _ipv6_on() else [])):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian: apt-get install iptables)"
    return None


@functools.cache
def network_problem(mode: str = "internet") -> str | None:
    """None when the agent's own network namespace (`internet` or `none`) can be made here, else
    why not: the launcher really runs once (`true` as the agent)."""
    missing = _tools(mode)
    if missing:
        return missing
    import tempfile

    with tempfile.TemporaryDirectory(prefix="cto-netns-probe-") as folder:
        launch = confine(Launch(["true"]), Network(mode, True, "probe"), Path(folder))
        try:
            # its own process group, as an agent's: pasta, left in it, ends with it
            process = subprocess.Popen(
                launch.argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
        except OSError as exc:
            return f"the agent's network namespace could not be made: {exc}"
        try:
            output, _ = process.communicate(timeout=PROBE_TIMEOUT)
        except subprocess.TimeoutExpired:
            output = f"no answer within {PROBE_TIMEOUT} s"
        finally:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
    if process.returncode != 0:
        said = " ".join(output.split())[:300]
        return f"the agent's network namespace could not be made here: {said}"
    return None


def choose_network(
    mode: str, sandbox: Sandbox, allow_host_ports: Sequence[int] = (), required: bool = False
) -> Network:
    """The network the agent gets, said plainly; raises NetworkUnavailable when `mode` cannot
    be had and the project requires it (or asked for `none`)."""
    if mode not in NETWORK_MODES:
        raise NetworkUnavailable(
            f"unknown agent.network.mode {mode!r}; choose one of {NETWORK_MODES}"
        )
    exposed = (
        "the agent reaches this machine's own services (the Dagster webserver's GraphQL, "
        "which launches runs; databases; anything on 127.0.0.1)"
    )
    if mode == "host":
        return Network("host", False, f"agent.network.mode is host: {exposed}")
    if sandbox.mode == "container":
        return _container_network(mode, sandbox, required)
    if not sandbox.isolates:
        if required or mode == "none":
            raise NetworkUnavailable(
                f"agent.network.mode is {mode} (required), but the agent has no sandbox: it "
                "could undo its own network namespace"
            )
        return Network("host", False, f"NO NETWORK ISOLATION: the sandbox is none: {exposed}")
    problem = network_problem(mode)
    if problem:
        if required or mode == "none":
            raise NetworkUnavailable(f"agent.network.mode is {mode} (required), but {problem}")
        return Network(
            "host",
            False,
            f"NO NETWORK ISOLATION: {problem}; {exposed} (agent.network.required: true refuses "
            "to start it)",
        )
    if mode == "none":
        return Network("none", True, "no network: the agent's own loopback only")
    ports = sorted(set(allow_host_ports))
    allowed = f"; host ports allowed: {', '.join(map(str, ports))}" if ports else ""
    return Network(
        "internet",
        True,
        "own network namespace (pasta): the internet, not this machine's services nor private "
        f"addresses{allowed}",
        tuple(ports),
    )


def _container_network(mode: str, sandbox: Sandbox, required: bool) -> Network:
    """The container sandbox has a network of its runtime's (agent.container_network)."""
    if sandbox.network == "none":
        return Network("none", True, "the container's network is none: its own loopback only")
    if required or mode == "none":
        raise NetworkUnavailable(
            f"agent.network.mode is {mode} (required), but the container sandbox's network is "
            f"{sandbox.network} (agent.container_network: none cuts it)"
        )
    return Network(
        "host",
        False,
        f"the container's {sandbox.network} network: it reaches this machine's non-loopback "
        "addresses and private networks (agent.network applies to the bwrap and user sandboxes)",
    )


def network_for(spec, sandbox: Sandbox) -> Network:
    """choose_network for an AgentSpec's fields."""
    return choose_network(
        spec.network, sandbox, spec.network_allow_host_ports, spec.network_required
    )
