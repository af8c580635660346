"""The token helper answers for the configured host only; the sandbox is chosen, never assumed."""

import os

import pytest

from cto_dagster.core.agents.environment import agent_environment
from cto_dagster.core.agents.sandbox import (
    SandboxUnavailable,
    bubblewrap_problem,
    choose_sandbox,
)
from cto_dagster.core.git.credentials import (
    answer,
    credential_environment,
    has_embedded_credentials,
    url_host,
)


def test_the_helper_answers_only_for_the_configured_host():
    env = credential_environment("tok3n-value", "https://git.example.com/acme/shop.git")
    assert env["CTO_DAGSTER_GIT_HOST"] == "git.example.com"
    ok = answer({"protocol": "https", "host": "git.example.com"}, env)
    assert ok == "username=x-access-token\npassword=tok3n-value\n"
    assert answer({"protocol": "https", "host": "evil.example.com"}, env) == ""
    assert answer({"protocol": "ssh", "host": "git.example.com"}, env) == ""
    assert answer({"protocol": "https", "host": "git.example.com"}, {}) == ""
    with_port = credential_environment("t0ken", "http://127.0.0.1:8080/x.git")
    assert answer({"protocol": "http", "host": "127.0.0.1:8080"}, with_port)
    assert answer({"protocol": "http", "host": "127.0.0.1:9090"}, with_port) == ""
    assert credential_environment("t0ken", "/local/path.git") == {}  # no helper for files
    assert credential_environment(None, "https://h/x") == {}


def test_urls_with_secrets_are_recognised():
    assert has_embedded_credentials("https://user:pass@host/x.git")
    assert not has_embedded_credentials("https://user@host/x.git")
    assert not has_embedded_credentials("git@github.com:acme/shop.git")
    assert url_host("https://h:8443/x") == "h:8443" and url_host("git@h:x") is None


def test_agent_environment_is_an_allowlist():
    parent = {
        "PATH": "/usr/bin",
        "GITHUB_TOKEN": "t",
        "ANTHROPIC_API_KEY": "k",
        "OTHER_KEY": "o",
        "B_KEY": "b",
        "GIT_DIR": "/evil",
        "LD_PRELOAD": "/evil.so",
    }
    env = agent_environment(
        parent,
        preset_names=("ANTHROPIC_API_KEY",),
        pass_env=("GITHUB_TOKEN",),  # asked for, but a git token never passes
        env_from={"OPENAI_API_KEY": "B_KEY"},
        denied=("GITHUB_TOKEN",),
    )
    assert env["PATH"] == "/usr/bin" and env["ANTHROPIC_API_KEY"] == "k"
    assert env["OPENAI_API_KEY"] == "b"
    for name in ("GITHUB_TOKEN", "OTHER_KEY", "B_KEY", "GIT_DIR", "LD_PRELOAD"):
        assert name not in env


def test_sandbox_choice():
    assert choose_sandbox("none").mode == "none"
    with pytest.raises(SandboxUnavailable):
        choose_sandbox("chroot")
    if bubblewrap_problem() is None:
        assert choose_sandbox("auto").mode == "bwrap"
    elif os.geteuid() == 0:
        assert choose_sandbox("auto").mode == "user"
    else:
        with pytest.raises(SandboxUnavailable, match=r"set `agent\.sandbox: none` to accept"):
            choose_sandbox("auto")
        chosen = choose_sandbox("auto", trusted_program=True)
        assert chosen.mode == "none" and "NO SANDBOX" in chosen.reason
    if os.geteuid() != 0:
        with pytest.raises(SandboxUnavailable, match="does not run as root"):
            choose_sandbox("user")
    else:
        with pytest.raises(SandboxUnavailable, match="does not exist"):
            choose_sandbox("user", user="no-such-user-here")
        chosen = choose_sandbox("user")  # asked for, also where bubblewrap works
        assert chosen.mode == "user" and chosen.user is None
        assert "None" not in chosen.reason and "a uid of its own" in chosen.reason


# An agent script outside the work tree: it reports what it could read and write.
PROBE = """
import json, pathlib, sys
here = pathlib.Path(__file__)
def probe(path, mode="r"):
    try:
        with open(path, mode):
            return "ok"
    except OSError as exc:
        return type(exc).__name__
pathlib.Path("probe.json").write_text(json.dumps({
    "neighbour": probe(here.with_name("neighbour.txt")),
    "itself writable": probe(here, "a"),
    "secret": probe(sys.argv[1]),
    "step file": probe(sys.argv[2]),
}))
"""


@pytest.mark.skipif(bubblewrap_problem() is not None, reason=f"{bubblewrap_problem()}")
def test_a_custom_command_reads_its_script_outside_the_work_tree_in_bwrap(tmp_path):
    """`agent.command: [python3, /srv/scripts/agent.py]`: the script named as a whole argv
    element is readable in the sandbox (it was not: "can't open file", exit 2, retried), and
    only the script: not its folder, not writable; a secret file or a file of the step's
    folder named in the command stays out of sight."""
    import json
    import sys

    from cto_dagster.core.agents import AgentSpec
    from cto_dagster.core.agents.runner import AgentPlace, run_agent
    from cto_dagster.core.agents.sandbox import Sandbox

    scripts = tmp_path / "srv" / "scripts"  # under /tmp: a private, empty /tmp in the sandbox
    scripts.mkdir(parents=True)
    script = scripts / "agent.py"
    script.write_text(PROBE)
    (scripts / "neighbour.txt").write_text("not for the agent")
    secret = tmp_path / "secrets" / "token"
    secret.parent.mkdir()
    secret.write_text("ghp_secret")
    step = tmp_path / "step"
    work, home = step / "repo", step / "home"
    work.mkdir(parents=True)
    home.mkdir()
    step_file = step / "notes.txt"
    step_file.write_text("the step's own")
    spec = AgentSpec(
        preset=None,
        command=(sys.executable, str(script), str(secret), str(step_file)),
        timeout_seconds=60,
        sandbox="bwrap",
        network="none",
    )
    place = AgentPlace(step, work, home, (), Sandbox("bwrap", "test"), masked=(secret,))
    env = {"PATH": os.environ["PATH"], "HOME": str(home)}
    outcome = run_agent(spec, {"prompt": "", "prompt_file": ""}, place, env, step / "agent.log")
    assert outcome.exit_code == 0, outcome.log_tail
    probe = json.loads((work / "probe.json").read_text())
    assert probe.pop("secret") in ("FileNotFoundError", "PermissionError")  # masked or absent
    assert probe == {
        "neighbour": "FileNotFoundError",
        "itself writable": "OSError",  # a read-only bind: EROFS
        "step file": "FileNotFoundError",
    }


def test_command_files_are_files_outside_the_step_folder_and_never_a_secret(tmp_path):
    """Only existing files named by absolute path; never a folder, a file of the step's folder,
    a secret file or a link to one; and for a uid of its own, only files it may read."""
    from cto_dagster.core.agents.sandbox import command_files, readable_by

    step, outside = tmp_path / "step", tmp_path / "outside"
    step.mkdir()
    outside.mkdir()
    script, secret, inner = outside / "agent.py", outside / "token", step / "prompt.md"
    for path in (script, secret, inner):
        path.write_text("x")
    (outside / "link").symlink_to(secret)
    elements = [str(script), str(outside), str(secret), str(outside / "link"), str(inner)]
    elements += ["agent.py", str(outside / "missing.py"), "--flag"]
    assert command_files(elements, step, [secret]) == [script]
    script.chmod(0o600)
    assert not readable_by(script, 65534, 65534)
    script.chmod(0o644)
    outside.chmod(0o700)
    try:
        assert not readable_by(script, 65534, 65534)  # a folder above it is not searchable
    finally:
        outside.chmod(0o755)
    assert readable_by(script, 65534, 65534) == all(
        p.stat().st_mode & 0o001 for p in script.parents
    )
