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
    assert env["CTO_GIT_HOST"] == "git.example.com"
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
