"""The speed-up layer's switch: `CTO_DAGSTER_SPEEDUPS=off` turns every hook off, and an
installed Dagster or Python the hooks were not verified with turns them off, saying so once."""

from __future__ import annotations

import logging
import os
from multiprocessing import forkserver

import pytest
from dagster._core.executor import child_process_executor

from cto_dagster.speedups import SWITCH_ENV, enabled, switch
from cto_dagster.speedups.code_server_forkserver import fork_runs_from_a_warm_server
from cto_dagster.speedups.early_forkserver import start_forkserver_early
from cto_dagster.speedups.forkservers import (
    SERVER_FORKSERVER_ENV,
    WARM_JOB_ENV,
    adopt_inherited_forkserver,
    prepare_steps_forkserver,
    warmup_preload,
)
from cto_dagster.speedups.step_polling import collective_polling


@pytest.fixture
def unverified(monkeypatch):
    """A Dagster release the hooks were not verified with (the line not said yet here)."""
    monkeypatch.delenv(SWITCH_ENV, raising=False)
    monkeypatch.setattr(switch, "installed_versions", lambda: ("1.99.0", (3, 11)))
    monkeypatch.setattr(switch, "_said_off", False)


@pytest.mark.speedups
def test_on_by_default_where_verified(monkeypatch):
    monkeypatch.delenv(SWITCH_ENV, raising=False)
    assert switch.unverified_reason() is None, "this Dagster/Python should be a verified pair"
    assert enabled()


def test_the_switch_turns_every_hook_off(monkeypatch):
    monkeypatch.setenv(SWITCH_ENV, "off")
    monkeypatch.setenv(SERVER_FORKSERVER_ENV, "1")
    monkeypatch.delenv(WARM_JOB_ENV, raising=False)
    assert not enabled()
    assert warmup_preload() == []
    assert fork_runs_from_a_warm_server(is_code_server=True) is False
    assert start_forkserver_early() is False
    assert adopt_inherited_forkserver(steps=1) is False
    prepare_steps_forkserver(object(), object(), 1)
    assert WARM_JOB_ENV not in os.environ
    assert "ensure_running" not in vars(forkserver._forkserver)
    original = child_process_executor._poll_for_event
    with collective_polling():
        assert child_process_executor._poll_for_event is original


@pytest.mark.parametrize(
    ("versions", "named"),
    [(("1.99.0", (3, 11)), "Dagster 1.99.0"), (("1.13.27", (3, 14)), "Python 3.14")],
)
def test_an_unverified_version_turns_them_off_with_one_line(monkeypatch, caplog, versions, named):
    monkeypatch.delenv(SWITCH_ENV, raising=False)
    monkeypatch.setattr(switch, "installed_versions", lambda: versions)
    monkeypatch.setattr(switch, "_said_off", False)
    with caplog.at_level(logging.WARNING, logger="cto_dagster.speedups"):
        assert not enabled()
        assert warmup_preload() == []
        assert start_forkserver_early() is False
        assert not enabled()
    lines = [r.getMessage() for r in caplog.records if r.name == "cto_dagster.speedups"]
    assert len(lines) == 1, lines
    assert "speed-ups off" in lines[0] and named in lines[0], lines


def test_force_turns_them_on_where_unverified(monkeypatch, unverified, caplog):
    monkeypatch.setenv(SWITCH_ENV, "force")
    with caplog.at_level(logging.WARNING, logger="cto_dagster.speedups"):
        assert enabled()
    assert not caplog.records
