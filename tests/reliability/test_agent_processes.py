"""Nothing the agent started outlives it (issue 27, item 3): under bubblewrap its pid namespace
ends with it; under `user` it runs as a uid of its own, which no other agent holds meanwhile, and
every process of that uid is ended before the orchestrator reads the work tree.

Agents here really double-fork daemons and really look for each other through /proc.
"""

import json
import os
import threading
import time
import uuid
from pathlib import Path

import pytest

from cto_dagster.core.agents.agent_users import agent_user, end_processes_of, processes_of
from tests.reliability.test_untrusted_agent import (  # noqa: F401 - the fixture
    bare_git,
    http_remote,
    needs_bwrap,
    needs_container,
    needs_root,
    run,
)

DAEMON = """
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        # the daemon: keeps writing into the work tree, its marker in its command line
        os.execv(sys.executable, [sys.executable, "-c",
            "import time, pathlib\\nwhile True:\\n    try:\\n"
            "        pathlib.Path('late.txt').write_text(str(time.time()))\\n"
            "    except OSError:\\n        pass\\n    time.sleep(0.02)",
            {marker!r}])
    os._exit(0)
time.sleep(0.3)
open("agent.txt", "w").write("done\\n")
"""


def processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.parametrize(
    "sandbox",
    [
        pytest.param("bwrap", marks=needs_bwrap),
        pytest.param("user", marks=needs_root),
        pytest.param("container", marks=needs_container),
    ],
)
def test_a_daemon_the_agent_leaves_is_ended_before_its_work_is_recorded(http_remote, sandbox):  # noqa: F811
    _server, repository, bare = http_remote
    marker = f"cto-daemon-{uuid.uuid4().hex}"
    result = run(repository, 1, DAEMON.format(marker=marker), sandbox)
    assert processes_with(marker) == [], "the agent's daemon outlived it"
    pushed = bare_git(bare, "ls-tree", "--name-only", result.branch).split()
    assert "agent.txt" in pushed
    # what it wrote while the agent ran may be there; nothing changed it after the record
    if "late.txt" in pushed:
        first = bare_git(bare, "show", f"{result.branch}:late.txt")
        time.sleep(0.2)
        assert bare_git(bare, "show", f"{result.branch}:late.txt") == first


SNOOP = """
import json, os, pathlib, time
found, planted = [], []
deadline = time.time() + {seconds}
pathlib.Path("uid.txt").write_text(str(os.getuid()))
while time.time() < deadline:
    for proc in pathlib.Path("/proc").iterdir():
        if not proc.name.isdigit() or proc.name == str(os.getpid()):
            continue
        try:
            if os.path.realpath(proc / "cwd") == os.getcwd():
                continue  # its own (a container's init works in the same tree)
        except OSError:
            pass
        try:
            if {secret!r}.encode() in (proc / "environ").read_bytes():
                found.append(proc.name)
        except OSError:
            pass
        try:
            target = proc / "cwd" / "planted.txt"
            target.write_text("planted by another agent")
            planted.append(proc.name)
        except OSError:
            pass
    time.sleep(0.05)
pathlib.Path("snooped.json").write_text(json.dumps({{"found": found, "planted": planted}}))
"""


@pytest.mark.parametrize(
    "sandbox",
    [pytest.param("user", marks=needs_root), pytest.param("container", marks=needs_container)],
)
def test_agents_cannot_reach_each_other(http_remote, sandbox):  # noqa: F811
    """Two agents at once, as two tasks (or two projects) on one machine: each looks for the
    other's secret in /proc and tries to write into the other's work tree; each has a uid of its
    own."""
    _server, repository, bare = http_remote
    secrets = {1: f"key-of-task-one-{uuid.uuid4().hex}", 2: f"key-of-task-two-{uuid.uuid4().hex}"}
    results = {}

    def one(task_id: int, other: int) -> None:
        code = SNOOP.format(seconds=3, secret=secrets[other])
        code = f"import os; os.environ['MY_KEY'] = {secrets[task_id]!r}\n" + code
        results[task_id] = run(repository, task_id, code, sandbox)

    threads = [threading.Thread(target=one, args=(a, b)) for a, b in ((1, 2), (2, 1))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    uids = set()
    for task_id, result in results.items():
        files = bare_git(bare, "ls-tree", "--name-only", result.branch).split()
        assert "planted.txt" not in files, f"task {task_id}'s work tree was written by another"
        snooped = json.loads(bare_git(bare, "show", f"{result.branch}:snooped.json"))
        assert snooped == {"found": [], "planted": []}, snooped
        uids.add(bare_git(bare, "show", f"{result.branch}:uid.txt").strip())
    assert len(results) == 2 and len(uids) == 2, uids


def exec_sleeper_as(uid: int) -> int:
    """A process of `uid` in a session of its own (as a daemon an agent left)."""
    pid = os.fork()
    if pid == 0:
        os.setsid()
        os.setgid(uid)
        os.setuid(uid)
        os.execv("/bin/sleep", ["sleep", "300"])
    return pid


@needs_root
def test_a_uid_is_held_by_one_agent_and_left_with_no_process(monkeypatch):
    monkeypatch.setenv("CTO_DAGSTER_AGENT_UIDS", "61990-61991")
    with agent_user() as first, agent_user() as second:
        assert first.uid != second.uid
        left = exec_sleeper_as(first.uid)
        with pytest.raises(Exception, match="no free agent uid"):
            with agent_user():
                pass
    assert processes_of(first.uid) == [] and processes_of(second.uid) == []
    assert os.waitpid(left, os.WNOHANG)[0] == left, "ended on the way out, reaped here"
    assert end_processes_of(first.uid, first.uid) == 0


@needs_root
def test_what_a_user_agent_leaves_in_shared_temp_folders_is_removed(http_remote):  # noqa: F811
    """Its uid goes to another agent later (maybe another project's): a key it dropped in /tmp
    or /dev/shm must not be there for it."""
    _server, repository, _bare = http_remote
    drop = f"cto-drop-{uuid.uuid4().hex}"
    code = (
        "import os, pathlib\n"
        f"for place in ('/tmp', '/var/tmp', '/dev/shm'):\n"
        f"    d = pathlib.Path(place) / {drop!r}; d.mkdir(); (d / 'key').write_text('k')\n"
        "open('agent.txt', 'w').write('x')\n"
    )
    run(repository, 1, code, "user")
    left = [p for p in ("/tmp", "/var/tmp", "/dev/shm") if (Path(p) / drop).exists()]
    assert left == [], f"left for the next holder of its uid: {left}"
