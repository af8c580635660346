"""The agent's network reaches the internet, not this machine's services (issue 27): agents (real
`run_task`, real sandbox, real pasta and firewall) that try this machine's loopback (where the
Dagster webserver's GraphQL launches runs), its other addresses (eth, docker bridge, link-local:
services bound to all addresses) and an allowed port.

Only loopback and this machine's own addresses are ever targets: nothing leaves the machine.
"""

import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cto_dagster.core.agents import AgentSpec
from cto_dagster.core.agents.network import (
    Network,
    NetworkUnavailable,
    choose_network,
    firewall_rules,
    host_addresses,
    network_problem,
)
from cto_dagster.core.agents.sandbox import Sandbox, bubblewrap_problem
from cto_dagster.core.demo.sample_repository import create_sample_repository
from cto_dagster.core.task_run.step import Repository, TaskRunRequest, run_task
from cto_dagster.core.taskmaster import parse_tasks

SYSTEM_PYTHON = "/usr/bin/python3"  # the `user` sandbox's agent cannot enter root's home
needs_pasta = pytest.mark.skipif(
    network_problem() is not None, reason=f"no agent network namespace: {network_problem()}"
)
needs_bwrap = pytest.mark.skipif(
    bubblewrap_problem() is not None, reason=f"no bubblewrap sandbox: {bubblewrap_problem()}"
)
needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists(SYSTEM_PYTHON),
    reason="the `user` sandbox needs root (and a system Python for the agent)",
)
SANDBOXES = [
    pytest.param("bwrap", marks=needs_bwrap),
    pytest.param("user", marks=needs_root),
]


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):  # what a GraphQL call to launch a run would be
        self.server.requests.append((self.client_address[0], self.path))  # type: ignore[attr-defined]
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")


class _DualStack(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


class HostServer:
    """A real HTTP server of this machine: on 127.0.0.1 (as `dagster dev` binds its webserver),
    or on every address of both families (as a webserver in a container does)."""

    def __init__(self, everywhere: bool = False):
        if everywhere:
            self.httpd = _DualStack(("::", 0), _Handler)
        else:
            self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
            self.httpd.daemon_threads = True
        self.httpd.requests = []  # type: ignore[attr-defined]
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def requests(self) -> list:
        return self.httpd.requests  # type: ignore[attr-defined]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# The agent: first tries to remove the firewall of its namespace, then POSTs a "launch a run" call
# to each target; writes what happened into its work tree.
ATTACK = """
import json, shutil, socket, subprocess, sys
results = {}
for tool in ('iptables', 'ip6tables'):
    path = shutil.which(tool) or '/usr/sbin/' + tool
    try:
        subprocess.run([path, '-w', '-F'], capture_output=True, timeout=30)
        subprocess.run([path, '-w', '-P', 'OUTPUT', 'ACCEPT'], capture_output=True, timeout=30)
    except OSError:
        pass
for target in json.loads(sys.argv[1]):
    host, port = target.rsplit(':', 1)
    try:
        with socket.create_connection((host.strip('[]'), int(port)), timeout=5) as conn:
            conn.sendall(b'POST /graphql HTTP/1.0\\r\\nContent-Length: 2\\r\\n\\r\\n{}')
            results[target] = 'REACHED ' + conn.recv(64).decode('latin-1').split('\\r\\n')[0]
    except OSError as exc:
        results[target] = f'refused: {exc}'
open('reach.json', 'w').write(json.dumps(results, indent=1))
"""


def _target(address: str, port: int) -> str:
    if ":" not in address:
        return f"{address}:{port}"
    scope = ""
    if address.lower().startswith("fe80"):
        scope = f"%{_interface_of(address)}"
    return f"[{address}{scope}]:{port}"


def _interface_of(address: str) -> str:
    """The interface a link-local address of this machine is on (it needs a scope)."""
    import ipaddress

    raw = ipaddress.IPv6Address(address).exploded.replace(":", "")
    with open("/proc/net/if_inet6") as handle:
        for line in handle:
            fields = line.split()
            if fields[0] == raw:
                return fields[-1]
    return "lo"


@pytest.fixture
def repository(tmp_path):
    bare = create_sample_repository(tmp_path / "sample", '{"master": {"tasks": [{"id": 1}]}}')
    return Repository(
        url=str(bare), workspace_root=str(tmp_path / "ws"), cache_root=str(tmp_path / "cache")
    ), bare


def run_attack(repository, sandbox: str, targets: list[str], **network) -> tuple[dict, list]:
    """Run the attacking agent as task 1; what it reached (from the pushed branch), the log."""
    repo, bare = repository
    python = SYSTEM_PYTHON if sandbox == "user" else sys.executable
    spec = AgentSpec(
        preset=None,
        command=(python, "-c", ATTACK, json.dumps(targets)),
        timeout_seconds=120,
        sandbox=sandbox,
        **network,
    )
    raw = [{"id": 1, "title": "Reach the webserver", "dependencies": []}]
    request = TaskRunRequest(task=parse_tasks(raw, [])["1"], level=0, repository=repo, agent=spec)
    lines: list[str] = []
    run_task(request, log=lines.append)
    shown = subprocess.run(
        ["git", f"--git-dir={bare}", "show", "feature/task-1-implementation:reach.json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(shown), lines


@needs_pasta
@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_agent_cannot_reach_this_machines_services_but_reaches_an_allowed_port(repository, sandbox):
    webserver, everywhere, allowed = HostServer(), HostServer(everywhere=True), HostServer()
    try:
        forbidden = [
            f"127.0.0.1:{webserver.port}",  # the GraphQL port on loopback
            f"127.0.0.1:{everywhere.port}",
            f"[::1]:{everywhere.port}",
            *(_target(a, everywhere.port) for a in sorted(host_addresses())),  # eth, bridge, ...
        ]
        permitted = f"127.0.0.1:{allowed.port}"
        reached, lines = run_attack(
            repository, sandbox, [*forbidden, permitted], network_allow_host_ports=(allowed.port,)
        )
        requests = webserver.requests + everywhere.requests
        allowed_requests = list(allowed.requests)
    finally:
        for server in (webserver, everywhere, allowed):
            server.close()
    assert requests == [], reached
    assert all(reached[t].startswith("refused") for t in forbidden), reached
    assert reached[permitted].startswith("REACHED HTTP/1.0 200"), reached
    assert len(allowed_requests) == 1
    assert any("agent network: own network namespace (pasta)" in line for line in lines), lines


@needs_pasta
@needs_bwrap
def test_network_none_leaves_the_agent_its_own_loopback_only(repository):
    allowed = HostServer()
    try:
        reached, _lines = run_attack(
            repository,
            "bwrap",
            [f"127.0.0.1:{allowed.port}"],
            network="none",
            network_allow_host_ports=(allowed.port,),
        )
        requests = list(allowed.requests)
    finally:
        allowed.close()
    assert requests == []
    assert reached[f"127.0.0.1:{allowed.port}"].startswith("refused"), reached


def test_without_isolation_every_task_start_says_so(monkeypatch):
    from cto_dagster.core.agents import network

    user = Sandbox("user", "test", "nobody")
    host = choose_network("host", user)
    assert not host.isolated and "reaches this machine's own services" in host.reason
    unsandboxed = choose_network("internet", Sandbox("none", "test"))
    assert not unsandboxed.isolated and unsandboxed.reason.startswith("NO NETWORK ISOLATION")
    with pytest.raises(NetworkUnavailable, match="no sandbox"):
        choose_network("internet", Sandbox("none", "test"), required=True)

    network.network_problem.cache_clear()
    monkeypatch.setattr(network.shutil, "which", lambda name, **_: None)
    try:
        missing = choose_network("internet", user)
        assert not missing.isolated
        assert missing.reason.startswith("NO NETWORK ISOLATION: pasta is not installed")
        assert "Dagster webserver's GraphQL" in missing.reason
        with pytest.raises(NetworkUnavailable, match="pasta is not installed"):
            choose_network("internet", user, required=True)
    finally:
        network.network_problem.cache_clear()


def test_firewall_rules_refuse_private_ranges_and_the_machines_addresses():
    rules = firewall_rules(4, {"192.0.2.2", "fd00::2"}, ["10.255.255.53"])
    lines = rules.splitlines()
    assert lines.index("-A OUTPUT -o lo -j ACCEPT") < lines.index(
        "-A OUTPUT -d 10.0.0.0/8 -j REFUSE"
    )
    assert "-A OUTPUT -d 10.255.255.53 -p udp --dport 53 -j ACCEPT" in lines
    for refused in ("172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10"):
        assert f"-A OUTPUT -d {refused} -j REFUSE" in lines
    assert "-A OUTPUT -d 192.0.2.2 -j REFUSE" in lines
    assert "fd00::2" not in rules
    six = firewall_rules(6, {"192.0.2.2", "fd00::2"}, [])
    assert "-A OUTPUT -d fd00::2 -j REFUSE" in six and "-A OUTPUT -d fe80::/10 -j REFUSE" in six


@needs_pasta
def test_pasta_ends_with_the_agent_even_when_its_group_is_never_reaped(tmp_path):
    """A step killed with SIGKILL leaves its agent's group to whoever reaps it; the agent's
    pasta (a root process holding host sockets) must not outlive the agent meanwhile."""
    import signal
    import time

    from cto_dagster.core.agents.network import confine
    from cto_dagster.core.agents.sandbox import Launch

    launch = confine(Launch(["sleep", "60"]), Network("internet", True, "test"), tmp_path)
    agent = subprocess.Popen(launch.argv, start_new_session=True)

    def pastas() -> list[int]:
        found = []
        for entry in os.listdir("/proc"):
            try:
                if entry.isdigit() and os.getpgid(int(entry)) == agent.pid:
                    if open(f"/proc/{entry}/comm").read().startswith(("pasta", "passt")):
                        found.append(int(entry))
            except OSError:
                continue
        return found

    try:
        deadline = time.monotonic() + 10
        while not pastas() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pastas(), "pasta did not start"
        os.kill(agent.pid, signal.SIGKILL)  # the agent alone; its group is left as it is
        agent.wait()
        deadline = time.monotonic() + 5
        while pastas() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pastas() == []
    finally:
        try:
            os.killpg(agent.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
