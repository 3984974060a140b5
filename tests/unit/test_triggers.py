"""ClusterCheckTrigger: serialize() mirrors __init__, and run() yields one event per outcome."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cilium_migration import checks
from cilium_migration.triggers import ClusterCheckTrigger

KWARGS: dict[str, Any] = {"check": "nodes_registered", "arguments": {"nodegroups": ["ng-cilium"], "count": 3},
          "aws_conn_id": "aws_default", "kubernetes_conn_id": "kubernetes_default", "region": "us-west-1",
          "poll_interval": 0.01, "max_errors": 2, "end_time": None}


def test_serialize_round_trips() -> None:
    path, kwargs = ClusterCheckTrigger(**KWARGS).serialize()
    assert path == "cilium_migration.triggers.ClusterCheckTrigger"
    assert kwargs == KWARGS
    assert ClusterCheckTrigger(**kwargs).serialize() == (path, kwargs)


async def _events(trigger: ClusterCheckTrigger) -> list[dict[str, Any]]:
    return [e.payload async for e in trigger.run()]


@pytest.mark.parametrize(("verdicts", "status"), [
    pytest.param([checks.WAITING, checks.WAITING, checks.DONE], "success", id="waits-then-done"),
    pytest.param([checks.WAITING, checks.FAILED], "failed", id="terminal-failure"),
    pytest.param(["raise", "raise"], "error", id="errors-until-limit"),
])
def test_run_polls_the_named_check_until_an_outcome(monkeypatch: pytest.MonkeyPatch, verdicts: list[str],
                                                    status: str) -> None:
    """The check itself is swapped for a scripted one: the trigger's loop is what is under test."""
    script = iter(verdicts)

    def scripted(clients: object, **kwargs: Any) -> checks.Verdict:
        assert kwargs == KWARGS["arguments"]
        step = next(script)
        if step == "raise":
            raise RuntimeError("503")
        return checks.Verdict(step, step)

    monkeypatch.setitem(checks.CHECKS, "nodes_registered", scripted)
    events = asyncio.run(_events(ClusterCheckTrigger(**KWARGS)))
    assert len(events) == 1 and events[0]["status"] == status
    assert next(script, None) is None


def test_run_ends_with_a_timeout_event_past_its_end_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(checks.CHECKS, "nodes_registered",
                        lambda clients, **kwargs: checks.Verdict(checks.WAITING, "not yet"))
    import time

    events = asyncio.run(_events(ClusterCheckTrigger(**{**KWARGS, "end_time": time.time() + 0.05})))
    assert [e["status"] for e in events] == ["timeout"]
