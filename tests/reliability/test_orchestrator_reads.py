"""The orchestrator never follows what the agent made (issue 27): agents that really attempt
each attack a security review reproduced, through the real `run_task`, against a real
authenticated HTTP remote. Each attack ends in a green task with the work recorded as data, or in
a clear task failure; never in a hang, a crash, a file touched outside the work tree, a poisoned
cache, or a broken next step.
"""

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pytest

import cto_dagster.core.agents.sandbox as sandbox_module
import cto_dagster.core.git.agent_work as inspect_module
import cto_dagster.core.git.cache as cache_module
import cto_dagster.core.git.command as command_module
from cto_dagster.core.agents import AgentSpec
from cto_dagster.core.demo.sample_repository import SAMPLE_README
from cto_dagster.core.git.command import GitTimeout, git_environment, run_git
from cto_dagster.core.support.limits import WorkLimits
from cto_dagster.core.support.safe_fs import remove_tree
from cto_dagster.core.support.workspaces import OWNER_FILE, write_identity
from cto_dagster.core.task_run.step import TaskFailed, TaskRunRequest, run_task
from tests.reliability.test_untrusted_agent import (
    SYSTEM_PYTHON,
    bare_git,
    needs_bwrap,
    needs_root,
    task,
)
from tests.reliability.test_untrusted_agent import http_remote as _http_remote

http_remote = _http_remote  # the fixture: a sample repository behind authenticated HTTP


def run(repository, task_id, code, sandbox="bwrap", limits=None, log=None):
    python = SYSTEM_PYTHON if sandbox == "user" else sys.executable
    spec = AgentSpec(
        preset=None,
        command=(python, "-c", code),
        timeout_seconds=120,
        sandbox=sandbox,
        limits=limits or WorkLimits(),
    )
    request = TaskRunRequest(task=task(task_id), level=0, repository=repository, agent=spec)
    return run_task(request, log=log or (lambda _line: None))


def branches(bare: Path) -> str:
    return bare_git(bare, "branch", "--list")


def tree_names(bare: Path, ref: str) -> list[bytes]:
    out = subprocess.run(
        ["git", f"--git-dir={bare}", "ls-tree", "-r", "-z", "--name-only", ref],
        capture_output=True,
        check=True,
    ).stdout
    return [name for name in out.split(b"\0") if name]


@pytest.fixture
def short_git_timeout(monkeypatch):
    """A git call that blocks fails the test in a minute instead of hanging it."""
    monkeypatch.setattr(command_module, "GIT_TIMEOUT_SECONDS", 60.0)


# ------------------------------------------------------------------ links swapped while recorded

SWAPPER = """
import os, pathlib, subprocess, time
victim, pidfile = {victim!r}, {pidfile!r}
names = [f'lib{{i}}' for i in range(20)]
for name in names:
    os.makedirs(name)
    pathlib.Path(name, 'mod.py').write_text('x = 1\\n')
    subprocess.run(['git', 'init', '-q', name], check=True)
    pathlib.Path(name + '-link').symlink_to(victim)  # a static link to the victim, too
pathlib.Path('work.txt').write_text('work\\n')
if os.fork() == 0:  # a daemon in a session of its own: it outlives the agent
    os.setsid()
    if os.fork():
        os._exit(0)
    pathlib.Path(pidfile).write_text(str(os.getpid()))
    end = time.time() + 20
    while time.time() < end:  # every nested repository, now links to the victim, now folders
        for name in names:
            try:
                os.rename(name, name + '.real'); os.symlink(victim, name)
            except OSError:
                pass
        time.sleep(0.002)
        for name in names:
            try:
                os.unlink(name); os.rename(name + '.real', name)
            except OSError:
                pass
        time.sleep(0.008)  # mostly folders: git and the copy see repositories, then links
    os._exit(0)
time.sleep(0.2)
"""


@pytest.mark.parametrize(
    "sandbox", [pytest.param("user", marks=needs_root), pytest.param("none", marks=needs_root)]
)
def test_nested_repositories_swapped_for_links_while_recorded_touch_nothing_outside(
    http_remote, tmp_path, short_git_timeout, sandbox
):
    """The agent leaves 20 nested repositories and a daemon that swaps each for a link to a
    root-owned repository elsewhere while the orchestrator records its work. The old clean-up of
    nested repositories deleted that repository's `.git` through the link. The `user` sandbox
    now ends such a daemon before the tree is read (the copy must hold against whatever state it
    left); with `none` the daemon lives on and races the recording (the agent could harm the
    victim itself there: what is checked is that the orchestrator never does)."""
    _server, repository, bare = http_remote
    victim = tmp_path / "victim"
    (victim / ".git").mkdir(parents=True)
    (victim / ".git" / "keep").write_text("precious\n")
    # the agent's user must be able to pass through every folder above its work tree (git
    # resolves its path) and its daemon's pid file: folders outside this test's root-only one
    workspaces = Path(tempfile.mkdtemp(prefix="cto-test-ws-", dir="/var/tmp"))
    workspaces.chmod(0o711)
    (workspaces / "shared").mkdir()
    (workspaces / "shared").chmod(0o777)
    repository = replace(repository, workspace_root=str(workspaces))
    pidfiles = []
    try:
        for attempt in range(1, 5):  # a race: several rounds
            pidfile = workspaces / "shared" / f"daemon-{attempt}.pid"
            pidfiles.append(pidfile)
            code = SWAPPER.format(victim=str(victim), pidfile=str(pidfile))
            try:
                result = run(repository, attempt, code, sandbox=sandbox)
            except TaskFailed as failure:  # the tree changed under the copy: said, not followed
                assert "not recorded" in failure.message, failure.message
            else:
                names = tree_names(bare, result.branch)
                assert b"work.txt" in names
                assert not any(b"keep" in name for name in names)
                assert "160000" not in bare_git(bare, "ls-tree", "-r", result.branch)
            assert pidfile.exists(), "the swapping daemon did not start"
            assert (victim / ".git" / "keep").read_text() == "precious\n"
    finally:
        for pidfile in pidfiles:
            try:
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
            except (OSError, ValueError):
                pass
        remove_tree(workspaces)
    assert (victim / ".git" / "keep").read_text() == "precious\n"


@needs_bwrap
def test_a_static_tree_full_of_links_is_recorded_as_links(http_remote, tmp_path):
    """Links to folders, to files outside, to a nested repository's `.git`, a link in place of a
    nested `.git`, a FIFO: links are recorded as links, nothing behind them is read."""
    _server, repository, bare = http_remote
    outside = tmp_path / "outside"
    (outside / ".git").mkdir(parents=True)
    (outside / "secret.txt").write_text("outside secret\n")
    code = f"""
import os, pathlib, subprocess
outside = {str(outside)!r}
pathlib.Path('to-folder').symlink_to(outside)
pathlib.Path('to-file').symlink_to(outside + '/secret.txt')
os.makedirs('lib'); pathlib.Path('lib/mod.py').write_text('x = 1\\n')
pathlib.Path('lib/.git').symlink_to(outside + '/.git')  # a nested `.git` that is a link
os.mkfifo('a-fifo')
pathlib.Path('work.txt').write_text('work\\n')
"""
    result = run(repository, 1, code)
    assert bare_git(bare, "show", f"{result.branch}:to-folder") == str(outside)  # the link text
    assert bare_git(bare, "show", f"{result.branch}:lib/mod.py") == "x = 1\n"
    names = tree_names(bare, result.branch)
    assert b"a-fifo" not in names and b"lib/.git" not in names
    assert "outside secret" not in bare_git(bare, "grep", "-I", "-e", ".", result.branch, "--")
    assert (outside / ".git").is_dir() and (outside / "secret.txt").exists()
    assert result.flattened_repositories == ["lib"]


# ------------------------------------------------------------------ the agent's alternates


@needs_bwrap
@pytest.mark.parametrize("alternates", ["fifo", "dev-zero"])
def test_the_agents_alternates_are_never_read(http_remote, alternates, short_git_timeout):
    """The agent commits, then makes its `objects/info/alternates` a FIFO (git blocked forever
    on it) or a link to `/dev/zero` (git grew to 832 MB in 2 s): its commits are still checked,
    from a copy of its own objects, and the task is green at once."""
    _server, repository, bare = http_remote
    make = "os.mkfifo(alt)" if alternates == "fifo" else "os.symlink('/dev/zero', alt)"
    code = f"""
import os, pathlib, subprocess
pathlib.Path('work.txt').write_text('work\\n')
subprocess.run(['git', 'add', 'work.txt'], check=True)
subprocess.run(['git', 'commit', '-q', '-m', 'mine'], check=True)
alt = '.git/objects/info/alternates'
os.unlink(alt)
{make}
"""
    started = time.monotonic()
    result = run(repository, 1, code)
    assert time.monotonic() - started < 50
    assert bare_git(bare, "show", f"{result.branch}:work.txt") == "work\n"


def test_a_git_call_that_blocks_is_stopped_and_named(tmp_path):
    """Every git call of the orchestrator is bounded: a FIFO as alternates ends in `GitTimeout`
    naming the command; `/dev/zero` ends at the memory bound, not by filling the machine."""
    env = git_environment()
    repo = tmp_path / "r.git"
    run_git(["init", "-q", "--bare", str(repo)], env, cwd=tmp_path)
    alternates = repo / "objects" / "info" / "alternates"
    os.mkfifo(alternates)
    started = time.monotonic()
    with pytest.raises(GitTimeout, match=r"git cat-file -e 1{40} did not finish within 2 s"):
        run_git(["cat-file", "-e", "1" * 40], env, git_dir=repo, timeout=2)
    assert time.monotonic() - started < 10
    alternates.unlink()
    alternates.symlink_to("/dev/zero")
    result = run_git(
        ["cat-file", "-e", "1" * 40], env, git_dir=repo, check=False, memory=256 * 1024 * 1024
    )
    assert result.returncode != 0 and "memory" in result.stderr.lower()


# ------------------------------------------------------------------ depth, names, dead steps

DEEP = """
import os, pathlib
pathlib.Path('work.txt').write_text('work\\n')
os.mkdir('deep'); os.chdir('deep')
for _ in range({levels}):
    os.mkdir('d'); os.chdir('d')
pathlib.Path('bottom.txt').write_text('bottom\\n')
"""


@needs_bwrap
def test_a_thousand_nested_folders_are_recorded_and_removed(http_remote):
    """1,000 nested folders: the old removal recursed (`RecursionError` after the push, no
    materialization, and every later step of that workspace root died in `reap_stale`)."""
    _server, repository, bare = http_remote
    result = run(repository, 1, DEEP.format(levels=1000))
    deepest = "deep/" + "d/" * 1000 + "bottom.txt"
    assert bare_git(bare, "show", f"{result.branch}:{deepest}") == "bottom\n"
    assert list(Path(repository.workspace_root).iterdir()) == []
    again = run(repository, 2, "open('two.txt', 'w').write('2')")  # the next step is fine
    assert bare_git(bare, "show", f"{again.branch}:two.txt") == "2"


@needs_bwrap
def test_a_tree_deeper_than_git_can_record_never_breaks_the_step(http_remote):
    """2,500 nested folders (paths past PATH_MAX): git cannot record the deepest file; the task
    is recorded without it or fails clearly, and its tree is removed all the same."""
    _server, repository, bare = http_remote
    try:
        result = run(repository, 1, DEEP.format(levels=2500))
    except TaskFailed as failure:
        assert "not recorded" in failure.message and "longer than" in failure.message
    else:
        assert bare_git(bare, "show", f"{result.branch}:work.txt") == "work\n"
    assert list(Path(repository.workspace_root).iterdir()) == []


def test_whatever_a_dead_step_left_the_next_step_runs(http_remote, tmp_path):
    """A step killed with SIGKILL left 5,000 nested folders, folders no one may read, names that
    are not UTF-8 and a link to a folder outside: the next step reaps it all and runs."""
    _server, repository, bare = http_remote
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("keep\n")
    root = Path(repository.workspace_root)
    root.mkdir(parents=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = root / f"cto-task-7-p{dead.pid}-dead"
    stale.mkdir()
    write_identity(stale, OWNER_FILE, dead.pid)
    level = os.open(stale, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(5000):
        os.mkdir("d", dir_fd=level)
        below = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=level)
        os.close(level)
        level = below
    os.close(level)
    (stale / b"caf\xe9-\xff".decode("utf-8", "surrogateescape")).write_text("x")
    (stale / "link").symlink_to(outside)
    locked = stale / "locked"
    (locked / "inner").mkdir(parents=True)
    locked.chmod(0)
    result = run(repository, 1, "open('x.txt', 'w').write('x')", sandbox="auto")
    assert bare_git(bare, "show", f"{result.branch}:x.txt") == "x"
    assert not stale.exists() and (outside / "keep").read_text() == "keep\n"


@needs_bwrap
def test_file_names_that_are_not_utf8_are_recorded(http_remote):
    """A crash before (`UnicodeDecodeError` in the gitlink check): any byte string a file system
    allows is a file name git records."""
    _server, repository, bare = http_remote
    code = (
        "import os\n"
        "open(b'caf\\xe9.txt', 'wb').write(b'latin-1 name\\n')\n"
        "os.mkdir(b'dir-\\xff'); open(b'dir-\\xff/\\x80\\x81', 'wb').write(b'x')\n"
    )
    result = run(repository, 1, code)
    names = tree_names(bare, result.branch)
    assert b"caf\xe9.txt" in names and b"dir-\xff/\x80\x81" in names


# ------------------------------------------------------------------ conflict markers

MARKED = "a = 1\\n<<<<<<< HEAD\\nb = 2\\n=======\\nb = 3\\n>>>>>>> feature/other\\n"


@needs_bwrap
@pytest.mark.parametrize(
    "hiding",
    [
        "open('.gitattributes', 'w').write('conflicted.txt -diff\\n')",
        "open('.gitattributes', 'w').write('* binary diff=nothing\\n')",
        "start = b'\\x00'  # a NUL byte in the file makes git call it binary",
    ],
    ids=["minus-diff", "binary-attribute", "nul-byte"],
)
def test_conflict_markers_are_found_however_the_file_is_marked(http_remote, hiding):
    _server, repository, bare = http_remote
    code = (
        f"start = b''\n{hiding}\nopen('conflicted.txt', 'wb').write(start + '{MARKED}'.encode())\n"
    )
    with pytest.raises(TaskFailed, match=r"conflict markers .* in conflicted\.txt"):
        run(repository, 1, code)
    assert "feature/task-1" not in branches(bare)


@needs_bwrap
def test_markers_already_in_the_repository_do_not_fail_a_task(http_remote, tmp_path):
    """Only markers the agent added count: a file that already held them (a test fixture) is
    left as it was or edited elsewhere, and the task is pushed."""
    _server, repository, bare = http_remote
    fixture = MARKED.replace("\\n", "\n")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(bare), str(clone)], check=True)
    (clone / "fixture.txt").write_text(fixture)
    ident = ["-c", "user.name=t", "-c", "user.email=t@example.com", "-C", str(clone)]
    subprocess.run(["git", *ident, "add", "fixture.txt"], check=True)
    subprocess.run(["git", *ident, "commit", "-qm", "a fixture with markers"], check=True)
    subprocess.run(["git", "-C", str(clone), "push", "-q", "origin", "HEAD:main"], check=True)
    code = "open('fixture.txt', 'a').write('one more line\\n')"
    result = run(repository, 1, code)
    assert bare_git(bare, "show", f"{result.branch}:fixture.txt") == fixture + "one more line\n"


# ------------------------------------------------------------------ size limits

LIMITS = WorkLimits(max_file_bytes=64 * 1024, max_total_bytes=256 * 1024, max_files=100)


@needs_bwrap
@pytest.mark.parametrize(
    ("code", "named", "content"),
    [
        (
            "open('big.bin', 'wb').write(b'b' * 100_000)",
            r"big\.bin is 97\.7 KiB.*max_file_bytes",
            b"b" * 100_000,
        ),
        (
            "[open(f'f{i}.txt', 'w').write(f'small file {i}') for i in range(200)]",
            r"more than 100 files \(agent\.limits\.max_files\)",
            b"small file 0",
        ),
        (
            "[open(f'part{i}.bin', 'wb').write(bytes([i]) * 60_000) for i in range(6)]",
            r"pass 256\.0 KiB together \(agent\.limits\.max_total_bytes",
            bytes([0]) * 60_000,
        ),
    ],
    ids=["biggest-file", "file-count", "total-size"],
)
def test_limits_fail_the_task_before_anything_is_hashed(http_remote, code, named, content):
    """5 GiB or 200,000 files were pushed, and the cache kept 200,000 loose objects: now the
    limits (small ones here) fail the task, named, before the content reaches the cache."""
    _server, repository, bare = http_remote
    with pytest.raises(TaskFailed, match=named) as failure:
        run(repository, 1, code, limits=LIMITS)
    assert "nothing was pushed" in failure.value.message
    assert "feature/task-1" not in branches(bare)
    cache = repository.cache()
    blob = run_git(["hash-object", "--stdin"], cache.local_env, input=content, text=False)
    sha = blob.stdout.decode().strip()
    assert not (cache.objects / sha[:2] / sha[2:]).exists(), "refused work reached the cache"
    assert run_git(
        ["cat-file", "-e", sha], cache.local_env, git_dir=cache.path, check=False
    ).returncode


def test_limits_are_project_settings_with_defaults():
    from cto_dagster.core.settings.models import AgentSettings

    default = AgentSettings().spec().limits
    assert default == WorkLimits(100 * 2**20, 2**30, 100_000)
    chosen = AgentSettings(limits={"max_files": 5, "max_file_bytes": 1024}).spec().limits
    assert (chosen.max_files, chosen.max_file_bytes) == (5, 1024)
    with pytest.raises(ValueError, match="greater than 0"):
        AgentSettings(limits={"max_files": 0})


@needs_bwrap
def test_the_cache_is_packed_as_it_grows(http_remote, monkeypatch):
    """Loose objects past the threshold are packed after the push, under the cache's lock; an
    object no ref reaches (a running step's) is kept."""
    _server, repository, bare = http_remote
    monkeypatch.setattr(cache_module, "LOOSE_OBJECT_LIMIT", 256)
    lines: list[str] = []
    first = run(repository, 1, "open('one.txt', 'w').write('1')", log=lines.append)
    cache = repository.cache()
    in_flight = cache.git("hash-object", "-w", "--stdin", input="a running step's blob\n")
    code = "[open(f'f{i}.txt', 'w').write(f'file {i}') for i in range(2000)]"
    result = run(repository, 2, code, log=lines.append)
    assert any("Packed the shared object cache" in line for line in lines), lines
    assert list(cache.objects.glob("??/*")) == []
    assert cache.has_commit(result.head_commit) and cache.has_commit(first.head_commit)
    assert run_git(["cat-file", "-e", in_flight], cache.local_env, git_dir=cache.path)
    assert bare_git(bare, "show", f"{result.branch}:f1999.txt") == "file 1999"


# ------------------------------------------------------------------ the shared cache

POISON = """
import pathlib, subprocess, zlib
cache = pathlib.Path(pathlib.Path('.git/objects/info/alternates').read_text().split()[0])
blob = subprocess.run(['git', 'rev-parse', 'HEAD:README.md'], capture_output=True,
                      text=True).stdout.strip()
evil = zlib.compress(b'blob 9\\x00poisoned\\n')
tried = []
for target, data in (
    (cache / blob[:2] / blob[2:], evil),
    (cache / 'pack' / 'pack-evil.idx', b'x'),
    (cache.parent / 'config', b'[core]\\n\\thooksPath = /tmp\\n'),
    (cache.parent / 'refs' / 'remotes' / 'origin' / 'main', b'0' * 40 + b'\\n'),
):
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        tried.append('WROTE ' + str(target))
    except OSError as exc:
        tried.append(type(exc).__name__)
pathlib.Path('tried.txt').write_text(repr(tried))
"""


@pytest.fixture
def passable_roots(http_remote):
    """Workspaces and cache in folders the `user` sandbox's agent may pass through (as the
    defaults, /var/tmp and /tmp, are), not in this test's root-only folder."""
    _server, repository, _bare = http_remote
    roots = Path(tempfile.mkdtemp(prefix="cto-test-roots-", dir="/var/tmp"))
    roots.chmod(0o755)
    yield replace(repository, workspace_root=str(roots / "ws"), cache_root=str(roots / "cache"))
    remove_tree(roots)


@pytest.mark.parametrize(
    "sandbox", [pytest.param("bwrap", marks=needs_bwrap), pytest.param("user", marks=needs_root)]
)
def test_a_sandboxed_agent_cannot_poison_the_shared_cache(http_remote, passable_roots, sandbox):
    """The agent writes a loose object in place of README.md's blob, a pack, the cache's config
    and a ref: the cache is out of its reach, and the next task reads the true README."""
    _server, _repository, bare = http_remote
    repository = passable_roots
    cache = repository.cache()
    first = run(repository, 1, POISON, sandbox=sandbox)
    tried = bare_git(bare, "show", f"{first.branch}:tried.txt")
    assert "Error" in tried, tried  # it really tried, and was refused
    config = (cache.path / "config").read_text()
    assert "hooksPath = /tmp" not in config
    assert not (cache.objects / "pack" / "pack-evil.idx").exists()
    seen = run(repository, 2, "import shutil; shutil.copy('README.md', 'seen.md')", sandbox=sandbox)
    assert bare_git(bare, "show", f"{seen.branch}:seen.md") == SAMPLE_README


def test_without_a_sandbox_the_agent_runs_only_when_the_project_says_none(http_remote, monkeypatch):
    """An agent of the same user can write the shared cache whatever its permissions: `auto`
    never falls back to no sandbox (the step fails, naming the choice), and `none` chosen by
    the project says the risk at every start."""
    _server, repository, bare = http_remote
    monkeypatch.setattr(sandbox_module, "bubblewrap_problem", lambda: "no bubblewrap here")
    monkeypatch.setattr(sandbox_module.os, "geteuid", lambda: 1000)
    with pytest.raises(TaskFailed, match=r"set `agent\.sandbox: none` to accept") as failure:
        run(repository, 1, "open('x', 'w').write('x')", sandbox="auto")
    assert "write the shared object cache" in failure.value.message
    assert "feature/task-1" not in branches(bare)
    lines: list[str] = []
    run(repository, 2, "open('x', 'w').write('x')", sandbox="none", log=lines.append)
    warned = [line for line in lines if "agent.sandbox is none" in line]
    assert warned and "write the shared object cache" in warned[0]


def test_the_tasks_file_cache_has_the_safety_settings(tmp_path):
    """The bare repository that reads the tasks file is set up as the object cache is."""
    from cto_dagster.core.demo.sample_repository import create_sample_repository
    from cto_dagster.core.git.cache import SAFE_BARE_CONFIG
    from cto_dagster.core.git.files import read_files_at

    bare = create_sample_repository(tmp_path / "sample", '{"master": {"tasks": []}}')
    cache = tmp_path / "files.git"
    env = git_environment()
    read_files_at(str(bare), "main", [".taskmaster/tasks/tasks.json"], cache, env)
    for key, value in SAFE_BARE_CONFIG:
        assert run_git(["config", key], env, git_dir=cache).stdout.strip() == value


@pytest.mark.parametrize("reader", ["tasks file", "object cache"])
def test_a_half_set_up_repository_gets_the_safety_settings(tmp_path, reader):
    """A setup cut short after `git init` (or a repository an older version made) leaves a
    repository with HEAD and none of the settings: both readers finish its setup (one shared
    setup) instead of taking HEAD for a finished one."""
    from cto_dagster.core.demo.sample_repository import create_sample_repository
    from cto_dagster.core.git.cache import SAFE_BARE_CONFIG, ObjectCache, cache_path
    from cto_dagster.core.git.files import read_files_at

    bare = create_sample_repository(tmp_path / "sample", '{"master": {"tasks": []}}')
    env = git_environment()
    path = tmp_path / "files.git" if reader == "tasks file" else cache_path(tmp_path, str(bare))
    path.parent.mkdir(parents=True, exist_ok=True)
    run_git(["init", "--quiet", "--bare", str(path)], env, cwd=path.parent)
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    run_git(["config", "core.hooksPath", str(hooks)], env, git_dir=path)
    if reader == "tasks file":
        read_files_at(str(bare), "main", [".taskmaster/tasks/tasks.json"], path, env)
    else:
        ObjectCache(tmp_path, str(bare), env).fetch()
    for key, value in SAFE_BARE_CONFIG:
        assert run_git(["config", key], env, git_dir=path).stdout.strip() == value, key


def test_the_tasks_file_reader_checks_object_ids_as_the_cache_does(tmp_path):
    """A pinned commit that is not an object id is never passed to git as one."""
    from cto_dagster.core.git.cache import holds_commit

    env = git_environment()
    cache = tmp_path / "c.git"
    run_git(["init", "--quiet", "--bare", str(cache)], env, cwd=tmp_path)
    assert not holds_commit(cache, "HEAD", env) and not holds_commit(cache, "-h", env)


@needs_bwrap
def test_every_kind_of_change_is_recorded_though_only_changes_are_copied(http_remote):
    """Files the starting commit has, unchanged, are not copied (they are hashed and compared
    instead); a change of mode, a same-size edit, a link and a deletion are all recorded."""
    _server, repository, bare = http_remote
    code = (
        "import os, pathlib\n"
        "os.chmod('README.md', 0o755)\n"
        "pathlib.Path('.gitignore').write_text('__pycachX__/\\n')  # the same size\n"
        "os.symlink('README.md', 'readme-link')\n"
        "os.symlink('a/b', 'dangling')\n"
    )
    result = run(repository, 1, code)
    tree = bare_git(bare, "ls-tree", "-r", result.branch)
    assert "100755 blob" in next(line for line in tree.splitlines() if "README.md" in line)
    assert bare_git(bare, "show", f"{result.branch}:.gitignore") == "__pycachX__/\n"
    assert "120000" in next(line for line in tree.splitlines() if "readme-link" in line)
    assert bare_git(bare, "show", f"{result.branch}:dangling") == "a/b"
    gone = run(repository, 2, "import os; os.unlink('README.md'); open('x', 'w').write('x')")
    names = tree_names(bare, gone.branch)
    assert b"README.md" not in names and b".taskmaster/tasks/tasks.json" in names


@needs_bwrap
def test_a_fifo_named_gitignore_fails_the_task_in_bounded_time(http_remote, monkeypatch):
    """git opens `.gitignore` files where it walks (without following links, but a FIFO blocks
    its open): the listing of the agent's tree has a bound of its own, and says why it failed."""
    _server, repository, bare = http_remote
    monkeypatch.setattr(inspect_module, "LIST_TIMEOUT", 3.0)
    code = "import os; os.mkdir('sub'); os.mkfifo('sub/.gitignore'); open('x', 'w').write('x')"
    started = time.monotonic()
    with pytest.raises(TaskFailed, match=r"could not list the work tree's files within 3 s"):
        run(repository, 1, code)
    assert time.monotonic() - started < 15  # not git's general bound (an hour; 20 s checked)
    assert "feature/task-1" not in branches(bare)
