"""Each preset on its own: the command it builds, what it refuses before starting, what it reads
from its CLI's output (lines as the real CLIs print them), and what it prepares in the agent's
home. The real binaries run in tests/test_agents_contract.py."""

import json
import re
from pathlib import Path

import pytest

from cto_dagster.core.agents.presets import PRESETS, LaunchContext


def context(tmp_path, env=None, isolated=True, under="var"):
    work = (tmp_path if under == "tmp" else Path("/var/tmp/cto-preset-test")) / "work"
    return LaunchContext(
        isolated=isolated,
        env=env or {},
        prompt_file=tmp_path / "prompt.md",
        work=work,
        home=tmp_path / "home",
    )


def test_every_preset_records_its_verified_cli_version():
    for name in ("claude", "codex", "gemini", "aider"):
        preset = PRESETS[name]
        assert re.fullmatch(r"\d+\.\d+\.\d+", preset.verified_version), name
        assert preset.verified_version in preset.install


def test_claude_runs_headless_with_stream_json_and_the_prompt_on_stdin(tmp_path):
    claude = PRESETS["claude"]
    argv = claude.argv(context(tmp_path))
    assert argv[:2] == ["claude", "--print"] and "--dangerously-skip-permissions" in argv
    assert argv[argv.index("--output-format") + 1] == "stream-json" and claude.stdin_prompt
    key = {"ANTHROPIC_API_KEY": "k"}
    root = claude.preflight(context(tmp_path, key, isolated=False), as_root=True)
    assert root and "sandbox" in root.message and not root.retryable
    assert claude.preflight(context(tmp_path, key), as_root=False) is None
    missing = claude.preflight(context(tmp_path, {}), as_root=False)
    assert "ANTHROPIC_API_KEY" in missing.message and "env_from" in missing.message


def test_codex_sandbox_follows_where_the_work_tree_is(tmp_path):
    codex = PRESETS["codex"]
    elsewhere = codex.argv(context(tmp_path, {"CODEX_API_KEY": "k"}))
    assert elsewhere[:3] == ["codex", "exec", "--json"] and elsewhere[-1] == "-"
    assert elsewhere[elsewhere.index("--sandbox") + 1] == "workspace-write"
    in_tmp = codex.argv(context(tmp_path, {"CODEX_API_KEY": "k"}, under="tmp"))
    assert in_tmp[in_tmp.index("--sandbox") + 1] == "danger-full-access"
    unsandboxed = codex.preflight(context(tmp_path, {"CODEX_API_KEY": "k"}, False, "tmp"), False)
    assert unsandboxed and "workspace_root" in unsandboxed.message
    base = codex.argv(context(tmp_path, {"CODEX_API_KEY": "k", "OPENAI_BASE_URL": "http://h/v1"}))
    provider = next(a for a in base if a.startswith("model_providers.cto_dagster="))
    assert 'base_url="http://h/v1"' in provider and 'env_key="CODEX_API_KEY"' in provider


def test_gemini_trusts_the_work_tree_and_chooses_the_key_auth(tmp_path):
    gemini = PRESETS["gemini"]
    ctx = context(tmp_path, {"GEMINI_API_KEY": "k", "GOOGLE_GEMINI_BASE_URL": "http://h"})
    argv = gemini.argv(ctx)
    assert "--yolo" in argv and argv[argv.index("--output-format") + 1] == "stream-json"
    assert gemini.extra_env["GEMINI_CLI_TRUST_WORKSPACE"] == "true"
    gemini.prepare_home(ctx)
    settings = json.loads((ctx.home / ".gemini" / "settings.json").read_text())
    assert settings["security"]["auth"]["selectedType"] == "gemini-api-key"
    assert settings["security"]["folderTrust"]["enabled"] is False


def test_aider_leaves_gitignore_and_commits_alone_and_never_downloads_prices(tmp_path):
    aider = PRESETS["aider"]
    ctx = context(tmp_path, {"OPENAI_API_KEY": "k"})
    argv = aider.argv(ctx)
    for flag in ("--no-gitignore", "--no-auto-commits", "--analytics-disable", "--yes-always"):
        assert flag in argv
    assert argv[argv.index("--message-file") + 1] == str(ctx.prompt_file)
    aider.prepare_home(ctx)
    assert (ctx.home / ".aider" / "caches" / "model_prices_and_context_window.json").exists()


@pytest.mark.parametrize(
    ("preset", "exit_code", "line", "expected", "retryable"),
    [
        (
            "claude",
            1,
            "--dangerously-skip-permissions cannot be used with root/sudo privileges for security",
            "refuses to skip permissions as root",
            False,
        ),
        ("codex", 2, "error: unexpected argument '--full-auto' found", "flags", False),
        (
            "gemini",
            55,
            "Gemini CLI is not running in a trusted directory. To proceed, either use",
            "untrusted",
            False,
        ),
        ("aider", 2, "aider: error: unrecognized arguments: --no-such-flag", "flags", False),
        (
            "aider",
            0,
            "litellm.AuthenticationError: AuthenticationError: OpenAIException",
            "refused",
            False,
        ),
        (
            "aider",
            0,
            "litellm.InternalServerError: InternalServerError: Connection error.",
            "failed",
            True,
        ),
    ],
)
def test_failure_signs_say_what_to_change(preset, exit_code, line, expected, retryable):
    problem = PRESETS[preset].problem(exit_code, ["some output\n", line + "\n"])
    assert problem is not None and expected in problem.message
    assert problem.retryable is retryable


def test_a_clean_exit_is_not_read_as_a_failure_except_for_aider():
    assert PRESETS["codex"].problem(0, ["error: unexpected argument"]) is None
    assert PRESETS["aider"].problem(0, ["Applied edit to hello.txt"]) is None


# lines as the real CLIs print them (from the contract runs against the stand-ins)
CLAUDE_RESULT = json.dumps(
    {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "num_turns": 2,
        "total_cost_usd": 0.0128,
        "usage": {"input_tokens": 2400, "cache_read_input_tokens": 100, "output_tokens": 160},
        "modelUsage": {"claude-opus-5-5": {"inputTokens": 2400}},
    }
)
CLAUDE_TOOL = json.dumps(
    {
        "type": "assistant",
        "message": {
            "content": [
                {"type": "tool_use", "name": "Write", "input": {"file_path": "/w/hello.txt"}},
                {"type": "tool_use", "name": "Bash", "input": {"command": "npm test"}},
            ]
        },
    }
)
CODEX_LINES = [
    '{"type":"thread.started","thread_id":"x"}',
    '{"type":"item.started","item":{"id":"i0","type":"command_execution","command":"pytest -q"}}',
    '{"type":"item.completed","item":{"id":"i0","type":"command_execution","command":"pytest -q"}}',
    '{"type":"item.completed","item":{"id":"i1","type":"file_change","changes":[{"path":"a.py"}]}}',
    '{"type":"turn.completed","usage":{"input_tokens":2400,"output_tokens":160}}',
]
GEMINI_LINES = [
    '{"type":"tool_use","tool_name":"write_file","parameters":{"file_path":"/w/hello.txt"}}',
    '{"type":"result","status":"success","stats":{"input_tokens":3600,"output_tokens":240,'
    '"tool_calls":1,"models":{"gemini-standin":{}}}}',
]


def test_usage_and_actions_from_each_cli_output():
    claude = PRESETS["claude"]
    usage = claude.usage([CLAUDE_TOOL, CLAUDE_RESULT])
    assert (usage.cost_usd, usage.input_tokens, usage.output_tokens) == (0.0128, 2500, 160)
    assert (usage.turns, usage.model) == (2, "claude-opus-5-5")
    assert claude.events(CLAUDE_TOOL) == ["editing /w/hello.txt", "running npm test"]
    failed = json.dumps({"type": "result", "is_error": True, "result": "API Error: 529"})
    assert "API Error: 529" in claude.problem(0, [failed]).message

    codex = PRESETS["codex"]
    usage = codex.usage(CODEX_LINES)
    assert (usage.input_tokens, usage.output_tokens, usage.turns) == (2400, 160, 3)
    assert codex.events(CODEX_LINES[1]) == ["running pytest -q"]
    assert codex.events(CODEX_LINES[3]) == ["editing a.py"]

    gemini = PRESETS["gemini"]
    usage = gemini.usage(GEMINI_LINES)
    assert (usage.input_tokens, usage.output_tokens, usage.turns, usage.model) == (
        3600,
        240,
        2,
        "gemini-standin",
    )
    assert gemini.events(GEMINI_LINES[0]) == ["editing /w/hello.txt"]

    aider = PRESETS["aider"]
    lines = [
        "Tokens: 1.2k sent, 16 received. Cost: $0.0031 message, $0.0031 session.",
        "Applied edit to hello.txt",
        "Tokens: 811 sent, 7 received. Cost: $0.0020 message, $0.0051 session.",
    ]
    usage = aider.usage(lines)
    assert (usage.input_tokens, usage.output_tokens, usage.turns) == (2011, 23, 2)
    assert usage.cost_usd == pytest.approx(0.0051)
    assert aider.events(lines[1]) == ["editing hello.txt"]
    assert aider.usage(["no usage here"]) is None


def test_the_contract_tests_use_only_the_pinned_clis(tmp_path):
    """A machine's own `claude` at another version (here 2.1.197, first on PATH) is never the
    one the contract test runs: it skips, naming the version it found; a pinned CLI at another
    version skips the same way; the pinned one at the verified release is used."""
    from cto_dagster.core.agents.presets import PRESETS
    from tests.test_agents_contract import verified_cli

    def fake(folder, version):
        folder.mkdir(parents=True, exist_ok=True)
        binary = folder / "claude"
        binary.write_text(f"#!/bin/sh\necho '{version} (Claude Code)'\n")
        binary.chmod(0o755)
        return binary

    pinned, machine = tmp_path / "tools" / "bin", tmp_path / "usr" / "bin"
    pinned.mkdir(parents=True)
    fake(machine, "2.1.197")
    found, reason = verified_cli("claude", pinned, str(machine))
    assert found is None and "2.1.197" in reason and PRESETS["claude"].verified_version in reason
    fake(pinned, "2.1.100")
    found, reason = verified_cli("claude", pinned, str(machine))
    assert found is None and "2.1.100" in reason
    binary = fake(pinned, PRESETS["claude"].verified_version)
    assert verified_cli("claude", pinned, str(machine)) == (binary, "")
