"""Starts one agent in a network namespace of its own (run as a script, standard library only:
`python -I -S netns_launch.py CONFIG -- ARGV...`).

The launcher is the agent's process (same pid, same process group): it makes a new network
namespace for itself, has `pasta` (Debian's `passt`) connect that namespace to the internet
through host sockets, puts the firewall rules in while it is still privileged there, drops to the
agent's user (the `user` sandbox) and becomes the agent (or bubblewrap, which makes the rest of
the sandbox). `pasta` stays in the agent's process group, so it ends with the agent's group.

Why not `pasta -- command`: as root pasta drops to `nobody` before it can map users (it fails),
and it cannot open another root process's namespace once it dropped its capabilities; so the
namespace is opened here and handed to it as an open file (`/proc/self/fd/N`).

CONFIG (JSON): mode (`internet` | `none`), pasta (its options, without the namespace), rules4 and
rules6 (iptables-restore input), routes (`4`/`6`: default routes to wait for), log (pasta's
output), and for the `user` sandbox uid, gid, groups, umask.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
PR_SET_PDEATHSIG = 1
READY_SECONDS = 10.0
FAILED = 125  # the launcher's own failure (like `env`): the agent never started


def _default_signals() -> None:
    """Python ignores SIGPIPE and SIGXFSZ; what it execs should not (as Popen restores them;
    pasta even refuses to start with SIGPIPE ignored)."""
    for name in ("SIGPIPE", "SIGXFSZ"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)


def _fail(message: str) -> None:
    sys.stderr.write(f"cto-dagster: agent network: {message}\n")
    sys.stderr.flush()
    os._exit(FAILED)


def _unshare(root: bool) -> None:
    """A new network namespace; an unprivileged step needs a user namespace to own it, in
    which it is root (uid 0 maps to its own uid) so that iptables keeps its capability."""
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWNET if root else CLONE_NEWUSER | CLONE_NEWNET
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(flags) != 0:
        _fail(f"cannot make a network namespace: {os.strerror(ctypes.get_errno())}")
    if not root:
        for name, text in (
            ("setgroups", "deny"),
            ("uid_map", f"0 {uid} 1"),
            ("gid_map", f"0 {gid} 1"),
        ):
            with open(f"/proc/self/{name}", "w") as handle:
                handle.write(text)


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sh", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sh", b"lo", flags | IFF_UP))


def _start_pasta(config: dict, root: bool) -> tuple[int, int]:
    """Fork the helper that attaches pasta to this process's namespace once it exists; the
    helper stays in the host's namespace (forked before the unshare). Returns its pid; the
    pipe's write end tells it to go."""
    go_read, go_write = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the helper: becomes pasta
        os.close(go_write)
        if not os.read(go_read, 1):
            os._exit(0)  # the launcher failed before its namespace existed
        # pasta ends with the agent (this process's parent, once it execs), whatever ends the
        # agent: its exit, a timeout, a step killed with SIGKILL and its group never reaped
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(0)
        log = os.open(config["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(log, 1)
        os.dup2(log, 2)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        netns = os.open(f"/proc/{parent}/ns/net", os.O_RDONLY)
        os.set_inheritable(netns, True)
        argv = ["pasta", *config["pasta"], "--netns", f"/proc/self/fd/{netns}"]
        if not root:
            userns = os.open(f"/proc/{parent}/ns/user", os.O_RDONLY)
            os.set_inheritable(userns, True)
            argv += ["--userns", f"/proc/self/fd/{userns}"]
        try:
            os.execvp(argv[0], argv)  # noqa: S606 (pasta, an argv list)
        finally:
            os._exit(127)
    os.close(go_read)
    return pid, go_write


def _routes() -> set[str]:
    """The address families (`4`, `6`) whose default route this namespace has."""
    found = set()
    try:
        with open("/proc/net/route") as handle:
            if any(line.split()[1:2] == ["00000000"] for line in handle.readlines()[1:]):
                found.add("4")
    except OSError:
        pass
    try:
        with open("/proc/net/ipv6_route") as handle:
            if any(line.startswith("0" * 32 + " 00 ") for line in handle):
                found.add("6")
    except OSError:
        pass
    return found


def _wait_ready(pasta: int, wanted: set[str], log: str) -> None:
    """Until pasta configured the namespace (its default routes are in), or pasta died."""
    deadline = time.monotonic() + READY_SECONDS
    while not wanted <= _routes():
        done, status = os.waitpid(pasta, os.WNOHANG)
        if done:
            try:
                with open(log, errors="replace") as handle:
                    said = " ".join(handle.read().split())[-400:]
            except OSError:
                said = ""
            _fail(f"pasta stopped (status {status}): {said}")
        if time.monotonic() > deadline:
            _fail(f"pasta did not configure the namespace within {READY_SECONDS:.0f} s")
        time.sleep(0.002)


def _firewall(config: dict) -> None:
    for tool, rules in (
        ("iptables-restore", config["rules4"]),
        ("ip6tables-restore", config["rules6"]),
    ):
        if not rules:
            continue
        done = subprocess.run([tool], input=rules, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            _fail(f"{tool} failed: {done.stderr.strip()[:300]}")


def _drop(config: dict) -> None:
    """The `user` sandbox's user, as Popen(user=..., group=..., extra_groups=[]) would."""
    if config.get("uid") is None:
        return
    os.setgroups(config.get("groups") or [])
    os.setgid(config["gid"])
    os.setuid(config["uid"])
    if config.get("umask") is not None:
        os.umask(config["umask"])


def main(args: list[str]) -> None:
    if len(args) < 3 or args[1] != "--":
        _fail("usage: netns_launch.py CONFIG -- ARGV...")
    _default_signals()
    config = json.loads(args[0])
    argv = args[2:]
    root = os.geteuid() == 0
    pasta = go = None
    if config["mode"] == "internet":
        pasta, go = _start_pasta(config, root)
    _unshare(root)
    _loopback_up()
    if go is not None:
        os.write(go, b"g")
        os.close(go)
    _firewall(config)
    if pasta is not None:
        _wait_ready(pasta, set(config["routes"]), config["log"])
    _drop(config)
    try:
        os.execvp(argv[0], argv)  # noqa: S606 (the agent's argv, as Popen would)
    except OSError as exc:
        sys.stderr.write(f"cannot start agent {argv[0]!r}: {exc.strerror or exc}\n")
        os._exit(127)


if __name__ == "__main__":
    main(sys.argv[1:])
