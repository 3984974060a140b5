"""ClusterCheckTrigger: serialize() mirrors __init__, and run() yields one event per outcome.

A check that raises is retried inside the trigger with backoff: temporary errors until the wait's end
time (they never use up ``max_errors``), unknown ones up to ``max_errors`` in a row, permanent ones not
at all (the wait fails at once, with the message).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from cilium_migration import checks
from cilium_migration.errors import PermanentError
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


def _scripted(monkeypatch: pytest.MonkeyPatch, steps: list[Any]) -> Any:
    """Swap the check for one that raises or answers as scripted; returns the iterator (to see what is left)."""
    script = iter(steps)

    def scripted(clients: object, **kwargs: Any) -> checks.Verdict:
        step = next(script)
        if isinstance(step, BaseException):
            raise step
        return checks.Verdict(step, step)

    monkeypatch.setitem(checks.CHECKS, "nodes_registered", scripted)
    return script


def test_temporary_errors_are_waited_out_past_max_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    outage = [ApiException(status=503, reason="Service Unavailable")] * 5
    script = _scripted(monkeypatch, [*outage, checks.WAITING, checks.DONE])
    trigger = ClusterCheckTrigger(**{**KWARGS, "end_time": time.time() + 30})
    events = asyncio.run(_events(trigger))
    assert [e["status"] for e in events] == ["success"]
    assert next(script, None) is None


def test_a_permanent_error_ends_the_wait_at_once_with_its_message(monkeypatch: pytest.MonkeyPatch) -> None:
    script = _scripted(monkeypatch, [PermanentError("node group 'ng-x' not found: fix new_nodegroup"),
                                     checks.DONE])
    events = asyncio.run(_events(ClusterCheckTrigger(**KWARGS)))
    assert [e["status"] for e in events] == ["failed"]
    assert "fix new_nodegroup" in events[0]["message"]
    assert next(script, None) == checks.DONE, "not checked again"


def test_the_timeout_names_the_last_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(clients: object, **kwargs: Any) -> checks.Verdict:
        raise ConnectionRefusedError("connection refused")

    monkeypatch.setitem(checks.CHECKS, "nodes_registered", unreachable)
    events = asyncio.run(_events(ClusterCheckTrigger(**{**KWARGS, "end_time": time.time() + 0.2})))
    assert [e["status"] for e in events] == ["timeout"]
    assert "temporary error: connection refused" in events[0]["message"]


@pytest.mark.parametrize("failures", [1, 2, 5, 10])
def test_backoff_grows_with_full_jitter_and_never_passes_the_end_time(failures: int) -> None:
    trigger = ClusterCheckTrigger(**{**KWARGS, "poll_interval": 2.0})
    assert all(0 <= trigger._backoff(failures) <= min(60.0, 2.0 * 2 ** (failures - 1)) for _ in range(50))
    ending = ClusterCheckTrigger(**{**KWARGS, "poll_interval": 2.0, "end_time": time.time() + 0.5})
    assert ending._backoff(failures) <= 0.5


def test_a_check_nothing_watches_is_polled_every_two_seconds_not_every_poll_interval(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """goldpinger's mesh cannot be watched: with a 10 s poll interval its second check still comes about
    2 s after the first (so the wait ends when the mesh gets there, not on a 10 s grid)."""
    times: list[float] = []

    def scripted(clients: object, **kwargs: Any) -> checks.Verdict:
        times.append(time.monotonic())
        return checks.Verdict(checks.DONE if len(times) == 2 else checks.WAITING, "mesh")

    monkeypatch.setitem(checks.CHECKS, "mesh_healthy", scripted)
    trigger = ClusterCheckTrigger(**{**KWARGS, "check": "mesh_healthy", "arguments": {}, "poll_interval": 10.0})
    events = asyncio.run(asyncio.wait_for(_events(trigger), timeout=8))
    assert events[0]["status"] == "success"
    assert 1.5 <= times[1] - times[0] < 5.0
