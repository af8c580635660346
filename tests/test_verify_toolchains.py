"""Verified work (issue 28) with real toolchains, through real `play_project` runs: fixture
repositories the tests write (a Python package tested with pytest, a Node package tested with
`node --test`), whose setups install from the registries into the shared package cache, and
agents that break, repair, and snoop.

Each run is a real `dagster job execute` of the code location with the multiprocess executor, a
real bare remote and the real sandbox (bubblewrap here, and the `user` sandbox where the test says
so). The tests that need PyPI or the npm registry skip, with the reason, where they are out of
reach.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import urllib.request
from pathlib import Path

import pytest

from cto_dagster.core.agents.network import host_addresses, network_problem
from cto_dagster.core.agents.sandbox import bubblewrap_problem
from tests.conftest import Project
from tests.helpers import REPO_ROOT, check_evaluations

pytestmark = pytest.mark.slow

# The `user` sandbox's processes cannot enter root's home, where this test's Python (and a pyenv
# shim first on PATH) may live: every command names the system's Python.
PYTHON = "/usr/bin/python3"
TOKEN = "ghp_VerifyChecksMustNotSeeThis7319"

needs_python = pytest.mark.skipif(
    not os.path.exists(PYTHON), reason=f"no system Python at {PYTHON}"
)
needs_bwrap = pytest.mark.skipif(
    bubblewrap_problem() is not None, reason=f"no bubblewrap sandbox: {bubblewrap_problem()}"
)
needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="the `user` sandbox needs the step to run as root"
)
needs_pasta = pytest.mark.skipif(
    network_problem() is not None, reason=f"no agent network namespace: {network_problem()}"
)


@functools.cache
def _reachable(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=15) as response:
            response.read(1)
    except OSError as exc:
        return f"{url} is out of reach ({exc})"
    return None


def needs_registry(url: str):
    return pytest.mark.skipif(_reachable(url) is not None, reason=str(_reachable(url)))


needs_pypi = needs_registry("https://pypi.org/simple/pytest/")
needs_npm = pytest.mark.skipif(
    shutil.which("npm") is None or shutil.which("node") is None,
    reason="no node/npm on this machine",
)
needs_npm_registry = needs_registry("https://registry.npmjs.org/is-number")

# The agent every test uses: what it writes comes from the plan in its argument, per task; on a
# repair (CTO_REPAIR_ATTEMPT) it reads the failing output it was given (CTO_CHECK_OUTPUT_FILE),
# records it, and writes the fix, as a model would from that output.
AGENT = """
import json, os, pathlib, sys
plan = json.loads(sys.argv[1])[os.environ["CTO_TASK_ID"]]
attempt = int(os.environ.get("CTO_REPAIR_ATTEMPT", "0"))
files = plan["files"]
if attempt:
    given = pathlib.Path(os.environ["CTO_CHECK_OUTPUT_FILE"]).read_text()
    assert plan["repair_when"] in given, given
    files = {**plan["repair"], f"repair-{attempt}.txt": given}
for name, text in files.items():
    path = pathlib.Path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
"""


def agent_settings(plan: dict) -> dict:
    return {"preset": None, "command": [PYTHON, "-c", AGENT, json.dumps(plan)]}


def task(task_id: int, deps=(), **metadata) -> dict:
    return {
        "id": task_id,
        "title": f"Task {task_id}",
        "status": "pending",
        "dependencies": list(deps),
        **({"metadata": metadata} if metadata else {}),
    }


@pytest.fixture
def places(tmp_path):
    """Workspaces and the package cache where an agent's own uid (`user` sandbox) may pass:
    pytest's own folder is root's alone (0700)."""
    base = Path(tempfile.mkdtemp(prefix="cto-verify-test-", dir="/var/tmp"))
    base.chmod(0o755)
    yield {"workspaces": base / "ws", "cache": base / "cache"}
    shutil.rmtree(base, ignore_errors=True)


def make(tmp_path, places, tasks, plan, verify, files, **settings) -> Project:
    return Project(
        tmp_path / "p",
        tasks,
        {
            "workspace_root": str(places["workspaces"]),
            "agent": {**agent_settings(plan), **settings.pop("agent", {})},
            "verify": {"integration": False, **verify},
            **settings,
        },
        files,
    )


def execute(project: Project, places, **env) -> subprocess.CompletedProcess:
    return project.execute(CTO_DAGSTER_CACHE=str(places["cache"]), timeout=600, **env)


def evaluations(project: Project) -> dict:
    from cto_dagster.commands.runs.instance_home import open_instance

    run_id = next(r.run_id for r in project.runs() if r.job_name.startswith("play_"))
    with open_instance(project.home) as instance:
        return check_evaluations(instance, run_id)


def failed_steps(project: Project) -> set[str]:
    import dagster as dg

    from cto_dagster.commands.runs.instance_home import open_instance

    run_id = next(r.run_id for r in project.runs() if r.job_name.startswith("play_"))
    with open_instance(project.home) as instance:
        records = instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.STEP_FAILURE, limit=1000
        ).records
    return {r.event_log_entry.dagster_event.step_key for r in records}


def meta(evaluation) -> dict:
    return {k: v.value for k, v in evaluation.metadata.items()}


def package_cache(project: Project, places) -> Path:
    key = hashlib.sha256(str(project.remote).encode()).hexdigest()[:16]
    return places["cache"] / "packages" / key


def shown(output: subprocess.CompletedProcess) -> str:
    return (output.stdout + output.stderr)[-6000:]


# --------------------------------------------------------------------------------------------
# A Python package tested with pytest, installed from PyPI into a virtual environment

CALC = "def add(a, b):\n    return a + b\n"
TEST_CALC = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
PY_FILES = {
    "calc.py": CALC,
    "tests/test_calc.py": TEST_CALC,
    ".gitignore": ".venv/\n__pycache__/\n.pytest_cache/\n",
}


def uv_program() -> str | None:
    """uv (a pip-compatible installer with its cache in the shared package cache's `uv`)."""
    found = shutil.which("uv") or REPO_ROOT / ".tools" / "uv" / "bin" / "uv"
    return str(found) if Path(found).is_file() else None


# pip itself caches downloads only as far as HTTP's cache headers allow, and proxies between
# a machine and PyPI (this one's) strip them: uv's wheel cache holds whatever was downloaded
UV = uv_program() or "uv"
needs_uv = pytest.mark.skipif(uv_program() is None, reason="no uv on PATH nor in .tools/uv")
UV_SETUP = [
    [UV, "venv", "--python", PYTHON, "--allow-existing", ".venv"],
    [UV, "pip", "install", "--python", ".venv/bin/python", "pytest==8.3.4"],
]
PYTEST = [[".venv/bin/python", "-m", "pytest", "-q", "-p", "no:cacheprovider"]]
BAD_SUB = "def sub(a, b):\n    return a + b\n"
SUB_TEST = "from sub import sub\n\n\ndef test_sub():\n    assert sub(5, 3) == 2\n"


@needs_python
@needs_bwrap
@needs_uv
@needs_pypi
def test_python_project_with_pytest_installs_from_the_shared_cache_and_is_repaired(
    tmp_path, places
):
    """Task 1 installs pytest from PyPI (into the shared cache) and passes; task 2, after it,
    installs it offline (only the cache can give it), breaks `sub`, and is repaired from
    pytest's own output."""
    plan = {
        "1": {"files": {"mul.py": "def mul(a, b):\n    return a * b\n",
                        "tests/test_mul.py": "from mul import mul\n\n\ndef test_mul():\n"
                                             "    assert mul(2, 3) == 6\n"}},
        "2": {
            "files": {"sub.py": BAD_SUB, "tests/test_sub.py": SUB_TEST},
            "repair_when": "assert 8 == 2",
            "repair": {"sub.py": "def sub(a, b):\n    return a - b\n"},
        },
    }  # fmt: skip
    offline = [UV_SETUP[0], [*UV_SETUP[1][:3], "--offline", *UV_SETUP[1][3:]]]
    project = make(
        tmp_path,
        places,
        [task(1), task(2, deps=[1], verify={"setup": offline})],
        plan,
        {"setup": UV_SETUP, "checks": PYTEST, "repair_attempts": 1},
        PY_FILES,
    )
    result = execute(project, places)
    assert result.returncode == 0, shown(result)

    checks = evaluations(project)
    first, second = checks[("task_001", "verified")], checks[("task_002", "verified")]
    assert first.passed and second.passed, (first.description, second.description)
    assert "passed after 1 repair(s)" in second.description
    one, two = meta(first), meta(second)
    assert two["repair_attempts"] == 1 and "| 1 | " in two["repairs"] and "passed" in two["repairs"]
    assert (
        "| after the agent | check | `python -m pytest -q -p no:cacheprovider` | 1 |"
        in (two["commands"])
    )
    assert (
        "| after repair 1 | check | `python -m pytest -q -p no:cacheprovider` | 0 |"
        in (two["commands"])
    )
    # every command's output is in the check: the first install downloaded pytest (into the
    # shared cache), the second (a later task, another work tree) installed it offline
    assert "Prepared 4 packages" in one["outputs"] and "+ pytest==8.3.4" in one["outputs"]
    assert "| baseline | setup | `uv pip install --offline" in two["commands"]
    assert "+ pytest==8.3.4" in two["outputs"] and "Prepared" not in two["outputs"]
    assert "1 passed" in one["outputs"] and "3 passed" in two["outputs"]
    cache = package_cache(project, places)
    assert any((cache / "uv").rglob("pytest*")), "nothing in the shared uv cache"

    records = project.records()
    assert records["2"].metadata["verified"] == "passed"
    assert records["2"].metadata["repair_attempts"] == 1
    assert records["1"].metadata["setup_seconds"] > 0 and records["1"].metadata["check_seconds"] > 0
    # the repair is on the branch, made from pytest's output; the venv is not
    assert project.git("show", "feature/task-2-implementation:sub.py") == (
        "def sub(a, b):\n    return a - b\n"
    )
    given = project.git("show", "feature/task-2-implementation:repair-1.txt")
    assert "test_sub" in given and "python -m pytest" in given
    files = project.git("ls-tree", "-r", "--name-only", "feature/task-2-implementation")
    assert ".venv" not in files and "mul.py" in files


# --------------------------------------------------------------------------------------------
# A Node package tested with `node --test`, its dependency installed with `npm ci`

PACKAGE = {
    "name": "calc",
    "version": "1.0.0",
    "private": True,
    "dependencies": {"is-number": "7.0.0"},
}
NODE_CALC = "const isNumber = require('is-number');\n" + (
    "exports.add = (a, b) => {\n"
    "  if (!isNumber(a) || !isNumber(b)) throw new TypeError('not a number');\n"
    "  return a + b;\n};\n"
)
NODE_TEST = (
    "const test = require('node:test');\nconst assert = require('node:assert');\n"
    "const { add } = require('../calc');\n\n"
    "test('adds', () => assert.strictEqual(add(2, 3), 5));\n"
)


def package_lock(tmp_path: Path) -> str:
    """package-lock.json for PACKAGE, made once by npm (with a cache of its own: the shared
    package cache must start empty)."""
    folder = tmp_path / "lock"
    folder.mkdir()
    (folder / "package.json").write_text(json.dumps(PACKAGE))
    made = subprocess.run(
        ["npm", "install", "--package-lock-only", "--ignore-scripts", "--no-audit", "--no-fund"],
        cwd=folder,
        env={**os.environ, "npm_config_cache": str(tmp_path / "lock-cache")},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip(f"npm could not make a package-lock.json here: {made.stderr[-500:]}")
    return (folder / "package-lock.json").read_text()


@needs_bwrap
@needs_npm
@needs_npm_registry
def test_node_project_fails_its_checks_and_its_dependent_does_not_start(tmp_path, places):
    """`npm ci` then `node --test`: task 1 passes; task 2 installs offline, from the cache task
    1's setup filled, and breaks `add` (no repair left): its `verified` check fails with the
    command and its output, the run fails, and task 3 (after it) never starts."""
    plan = {
        "1": {"files": {"double.js": "exports.double = (a) => a * 2;\n",
                        "test/double.test.js": "const test = require('node:test');\n"
                        "const assert = require('node:assert');\n"
                        "test('doubles', () => assert.strictEqual("
                        "require('../double').double(4), 8));\n"}},
        "2": {"files": {"calc.js": NODE_CALC.replace("a + b", "a - b")}},
        "3": {"files": {"three.txt": "3\n"}},
    }  # fmt: skip
    files = {
        "package.json": json.dumps(PACKAGE, indent=2) + "\n",
        "package-lock.json": package_lock(tmp_path),
        "calc.js": NODE_CALC,
        "test/calc.test.js": NODE_TEST,
        ".gitignore": "node_modules/\n",
    }
    offline = {"setup": [["npm", "ci", "--offline", "--no-audit", "--no-fund"]]}
    project = make(
        tmp_path,
        places,
        [task(1), task(2, deps=[1], verify=offline), task(3, deps=[2])],
        plan,
        {
            "setup": [["npm", "ci", "--no-audit", "--no-fund", "--loglevel=http"]],
            "checks": [["node", "--test"]],
            "repair_attempts": 0,
        },
        files,
    )
    result = execute(project, places)
    assert result.returncode != 0, shown(result)

    checks = evaluations(project)
    assert checks[("task_001", "verified")].passed
    failed = checks[("task_002", "verified")]
    assert not failed.passed and failed.description.startswith("failed: `node --test`")
    data = meta(failed)
    assert "| after the agent | check | `node --test` | 1 |" in data["commands"]
    assert "exited with code 1" in data["commands"]
    assert "AssertionError" in data["failing_output_tail"] and "-1" in data["failing_output_tail"]
    # task 2's setup ran offline: it could only install from what task 1's setup cached
    assert "| baseline | setup | `npm ci --offline --no-audit --no-fund` | 0 |" in data["commands"]
    assert "(cache miss)" in meta(checks[("task_001", "verified")])["outputs"]
    assert any((package_cache(project, places) / "npm").rglob("index-v5/*"))

    # the work is recorded (and pushed, for people to see), its step failed: the blocking check
    assert failed_steps(project) == {"proj__task_002"}
    records = project.records()
    assert records["2"].metadata["verified"] == "failed"
    assert "3" not in records  # the dependent of an unverified task does not run
    assert "feature/task-3-implementation" not in project.git("branch", "--list")
    assert "a - b" in project.git("show", "feature/task-2-implementation:calc.js")


# --------------------------------------------------------------------------------------------
# A failing baseline is the dependencies' breakage (offline: the standard library's unittest)

UNITTEST = [[PYTHON, "-m", "unittest", "discover", "-s", "tests", "-t", "."]]


@needs_python
@needs_bwrap
def test_a_failing_baseline_is_blamed_on_the_dependencies_and_the_agent_does_not_run(
    tmp_path, places
):
    """Task 1 checks only itself (its metadata.verify) and passes; the test it adds fails the
    project's checks, so task 2's baseline, on task 1's branch, fails before its agent."""
    breaking = "import unittest\n\n\nclass T(unittest.TestCase):\n    def test_x(self):\n" + (
        "        self.assertEqual(1, 2)\n"
    )
    plan = {
        "1": {"files": {"tests/test_breaks.py": breaking}},
        "2": {"files": {"agent-ran.txt": "yes\n"}},
    }
    own = {"checks": [[PYTHON, "-c", "print('task 1 checks itself')"]]}
    project = make(
        tmp_path,
        places,
        [task(1, verify=own), task(2, deps=[1])],
        plan,
        {"checks": UNITTEST, "repair_attempts": 1},
        {"tests/__init__.py": "", "tests/test_ok.py": "import unittest\n"},
    )
    result = execute(project, places)
    assert result.returncode != 0, shown(result)
    records = project.records()
    assert records["1"].status == "materialized" and records["2"].status == "failed"
    error = records["2"].error or ""
    assert "already fail before the agent started" in error, error
    assert "on feature/task-1-implementation" in error and "not this task's" in error, error
    assert "test_breaks" in error and "AssertionError: 1 != 2" in error, error
    log = result.stdout + result.stderr
    assert "task 2: agent sandbox" not in log  # the agent never started
    assert "feature/task-2-implementation" not in project.git("branch", "--list")


# --------------------------------------------------------------------------------------------
# Checks see no secret and reach none of the orchestrator's services


class Listener:
    """A TCP port of this machine (as the Dagster webserver's) that records who connects."""

    def __init__(self, address: str):
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.connections: list = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            self.connections.append(peer)
            conn.close()

    def close(self):
        self.sock.close()


# A check that looks for the token everywhere a process could (its environment, every process's
# environment and command line, the token file) and tries the orchestrator's ports, then tries
# to write into the shared package cache: it fails loudly on anything it gets. The token is
# written backwards so that this command line does not hold it.
SNOOP = """
import json, os, pathlib, socket, sys
wanted = sys.argv[1][::-1]
targets = json.loads(sys.argv[2])
token_file, cache = pathlib.Path(sys.argv[3]), pathlib.Path(sys.argv[4])
found, tried = [], []
if any(wanted in v for v in os.environ.values()):
    found.append('environment')
for entry in pathlib.Path('/proc').iterdir():
    for name in ('environ', 'cmdline'):
        try:
            data = (entry / name).read_bytes()
        except OSError:
            continue
        tried.append(name)
        if wanted.encode() in data:
            found.append(f'/proc/{entry.name}/{name}')
try:
    text = token_file.read_text()
    tried.append('token file: read ' + repr(text[:5]))
    if wanted in text:
        found.append('token file')
except OSError as exc:
    tried.append('token file: ' + type(exc).__name__)
for host, port in targets:
    try:
        socket.create_connection((host, port), timeout=5).close()
        found.append(f'connected to {host}:{port}')
    except OSError as exc:
        tried.append(f'{host}:{port} refused: {exc}')
try:
    (cache / 'pip' / 'poisoned').write_text('x')
    found.append('wrote into the shared package cache')
except OSError as exc:
    tried.append('cache: ' + type(exc).__name__)
print('TRIED', json.dumps(tried[-12:]), len(tried))
if found:
    print('FOUND', found)
    sys.exit(7)
print('NOTHING FOUND')
"""
# A setup that fills the shared cache (as pip would), to see whose it is afterwards.
FILL_CACHE = (
    "import os, pathlib; d = pathlib.Path(os.environ['PIP_CACHE_DIR']) / 'wheels'; "
    "d.mkdir(parents=True, exist_ok=True); (d / 'from-setup.txt').write_text('cached'); "
    "print('setup uid', os.getuid())"
)


@needs_python
@needs_pasta
@pytest.mark.parametrize(
    "sandbox", [pytest.param("bwrap", marks=needs_bwrap), pytest.param("user", marks=needs_root)]
)
def test_checks_cannot_read_the_git_token_nor_reach_the_orchestrator(tmp_path, places, sandbox):
    shared = places["workspaces"].parent / "shared"  # a folder the agent may read, holding...
    shared.mkdir()
    (shared / "notes.txt").write_text("readable\n")
    token_file = shared / "token"  # ... the token file (a mounted Secret's)
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    addresses = sorted(a for a in host_addresses() if ":" not in a)  # eth, bridges
    listeners = [Listener("127.0.0.1"), *(Listener(a) for a in addresses)]
    targets = [[lis.sock.getsockname()[0], lis.port] for lis in listeners]
    assert len(targets) >= 2, "no non-loopback address on this machine to try"
    project = make(
        tmp_path,
        places,
        [task(1)],
        {"1": {"files": {"one.txt": "1\n"}}},
        {
            "setup": [[PYTHON, "-c", FILL_CACHE]],
            "checks": [
                [
                    PYTHON,
                    "-c",
                    SNOOP,
                    TOKEN[::-1],
                    json.dumps(targets),
                    str(token_file),
                    "@SHARED_CACHE@",
                ]
            ],
        },
        {},
        agent={"sandbox": sandbox, "sandbox_read_only": [str(shared)]},
        git={"token_env": "CTO_TEST_VERIFY_TOKEN", "token_file": str(token_file)},
    )
    # the check's last argument: the shared cache's real path (known once the remote is)
    cache = package_cache(project, places)
    config = project.config.read_text().replace("@SHARED_CACHE@", str(cache))
    project.config.write_text(config)
    try:
        result = execute(project, places, CTO_TEST_VERIFY_TOKEN=TOKEN)
        connections = [c for lis in listeners for c in lis.connections]
    finally:
        for lis in listeners:
            lis.close()
    assert result.returncode == 0, shown(result)
    check = evaluations(project)[("task_001", "verified")]
    outputs = meta(check)["outputs"]
    assert check.passed, outputs
    assert "NOTHING FOUND" in outputs and "token file: " in outputs, outputs
    assert "refused" in outputs and "cache: " in outputs, outputs
    assert connections == []
    assert TOKEN not in shown(result)
    # the setup really wrote the cache (as the agent's uid in `user`), which is root's again
    written = cache / "pip" / "wheels" / "from-setup.txt"
    assert written.read_text() == "cached"
    for path in (cache, cache / "pip", cache / "pip" / "wheels", written):
        assert path.stat().st_uid == os.geteuid(), path
    assert not (cache / "pip" / "poisoned").exists()
    if sandbox == "user":
        assert "setup uid 0" not in outputs and "setup uid" in outputs, outputs
