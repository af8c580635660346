"""Integration branches of old runs are pruned (issue 15, part 4): a project keeps its last
`integration.keep_runs` runs' branches; older ones go, unless someone pushed to them."""

import subprocess

import pytest

from tests.conftest import demo_task

pytestmark = pytest.mark.slow


def integration_branches(project) -> dict[str, str]:
    out = project.git("for-each-ref", "--format=%(refname:short) %(objectname)", "refs/heads/")
    return dict(line.split() for line in out.splitlines() if line.startswith("integration/"))


def token_of(branch: str) -> str:
    return branch.rsplit("-", 1)[1]


def test_only_the_last_runs_keep_their_integration_branches(make_project, tmp_path):
    project = make_project(
        [demo_task(1), demo_task(2, deps=[1])], settings={"integration": {"keep_runs": 2}}
    )
    tokens = []
    for _ in range(3):
        result = project.execute()
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        tokens.append(project.runs()[0].run_id[:8])
    left = integration_branches(project)
    assert {token_of(b) for b in left} == set(tokens[1:])  # the first run's are gone
    assert len(left) == 4  # two levels, two runs

    # someone pushes to an older run's branch: it is not ours to delete any more
    project_one = make_project([demo_task(1)], settings={"integration": {"keep_runs": 1}}, name="q")
    assert project_one.execute().returncode == 0
    [branch] = integration_branches(project_one)
    clone = tmp_path / "clone"
    subprocess.run(
        ["git", "clone", "-q", "-b", branch, str(project_one.remote), str(clone)], check=True
    )
    (clone / "review.txt").write_text("a reviewer's fix\n")
    ident = ["-c", "user.name=r", "-c", "user.email=r@r"]
    subprocess.run(["git", "-C", str(clone), "add", "--all"], check=True)
    subprocess.run(["git", *ident, "-C", str(clone), "commit", "-qm", "fix"], check=True)
    subprocess.run(["git", "-C", str(clone), "push", "-q", "origin", branch], check=True)
    assert project_one.execute().returncode == 0
    left = integration_branches(project_one)
    assert branch in left and len(left) == 2  # the reviewed branch stays, beside the new run's
