"""Triggers for the long waits: run one named check from ``checks`` until it is done or failed.

``run()`` has no side effects (it only reads the cluster) and yields a single ``TriggerEvent``:
``{"status": "success"|"failed"|"timeout"|"error", "message": ..., "data": ...}``. The check is the same sync
function the sensor pokes with, run in a thread (``asyncio.to_thread``), through the same retrying clients.

The check runs again as soon as a Kubernetes watch on what it reads (``watches.watched``) reports a change,
through the cncf provider's async client, so a wait ends within a second of its condition turning true;
while every watch is up, a slow poll (``watches.FALLBACK_POLL_S``) is only a safety net. Checks nothing can be
watched for (EKS node groups, goldpinger's mesh) poll every ``UNWATCHED_POLL_S`` (2 s), or three times as
long as the last check took when that is longer (a mesh of 1,000 pods), never less often than
``poll_interval``: their condition turns true when the cluster gets there, not on a 10 s grid. Watches the
server refuses fall back to polling every ``poll_interval``; a watch that breaks is resumed with backoff.

A check that raises is retried inside the trigger, after exponential backoff with full jitter (base
``poll_interval``, at most a minute), as ``errors.classify`` says: a temporary error (429, 5xx, EKS
throttling, connection errors) until the wait's ``end_time``; an unknown one up to ``max_errors`` times in
a row (then ``error``: the task's retries take over); a permanent one ends the wait at once (``failed``,
with the message that says what to fix).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from cilium_migration.errors import Kind, classify
from cilium_migration.retrying import full_jitter
from cilium_migration.watches import Watching, watched

MAX_ERROR_BACKOFF_S = 60.0
UNWATCHED_POLL_S = 2.0  # a check nothing can be watched for is polled this often (at most)


class ClusterCheckTrigger(BaseTrigger):
    """Wait until ``checks.<check>(**arguments)`` is ``done`` (or ``failed``: a terminal state).

    :param check: name of a check in ``cilium_migration.checks.CHECKS``
    :param arguments: its keyword arguments (JSON-serialisable)
    :param poll_interval: seconds between checks
    :param end_time: epoch seconds after which the wait ends with ``{"status": "timeout"}``
    """

    def __init__(self, *, check: str, arguments: dict[str, Any], aws_conn_id: str, kubernetes_conn_id: str,
                 region: str | None, poll_interval: float = 10.0, max_errors: int = 10,
                 end_time: float | None = None) -> None:
        super().__init__()
        self.check = check
        self.arguments = arguments
        self.aws_conn_id = aws_conn_id
        self.kubernetes_conn_id = kubernetes_conn_id
        self.region = region
        self.poll_interval = poll_interval
        self.max_errors = max_errors
        self.end_time = end_time

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "cilium_migration.triggers.ClusterCheckTrigger",
            {
                "check": self.check,
                "arguments": self.arguments,
                "aws_conn_id": self.aws_conn_id,
                "kubernetes_conn_id": self.kubernetes_conn_id,
                "region": self.region,
                "poll_interval": self.poll_interval,
                "max_errors": self.max_errors,
                "end_time": self.end_time,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from cilium_migration import checks
        from cilium_migration.clients import Clients

        clients = Clients(aws_conn_id=self.aws_conn_id, kubernetes_conn_id=self.kubernetes_conn_id,
                          region=self.region)
        async with Watching(self.kubernetes_conn_id, watched(self.check, self.arguments), self.log) as changes:
            async for event in self._checks(checks, clients, changes):
                yield event
                return

    async def _checks(self, checks: Any, clients: Any, changes: Watching) -> AsyncIterator[TriggerEvent]:
        errors = failures = 0
        last = "not checked yet"
        while True:
            if self.end_time is not None and time.time() >= self.end_time:
                # enforced here too: ``airflow dags test`` runs triggers in-process without defer timeouts
                yield TriggerEvent({"status": "timeout", "message": f"{self.check}: timed out; last: {last}",
                                    "data": {}})
                return
            changes.clear()  # a change from now on means: check again
            started = time.monotonic()
            try:
                verdict = await asyncio.to_thread(checks.run, self.check, clients, **self.arguments)
            except Exception as exc:
                kind = classify(exc)
                if kind is Kind.PERMANENT:
                    yield TriggerEvent({"status": "failed", "message": f"{self.check}: {exc}", "data": {}})
                    return
                failures += 1
                if kind is Kind.UNKNOWN or self.end_time is None:
                    errors += 1
                last = f"{kind.value} error: {exc}".splitlines()[0]
                self.log.warning("%s: check failed (%s, %d in a row): %s", self.check, kind.value, failures, exc)
                if errors >= self.max_errors:
                    yield TriggerEvent({"status": "error", "message": f"{self.check}: {exc}", "data": {}})
                    return
                await asyncio.sleep(self._backoff(failures))
                continue
            failures = 0
            errors = 0
            last = verdict.message
            self.log.info("%s: %s", self.check, verdict.message)
            if verdict.status == checks.DONE:
                yield TriggerEvent({"status": "success", "message": verdict.message, "data": verdict.data})
                return
            if verdict.status == checks.FAILED:
                yield TriggerEvent({"status": "failed", "message": verdict.message, "data": verdict.data})
                return
            delay = changes.interval(self.poll_interval)
            if not changes.targets:  # nothing to watch: poll as often as the check's cost allows
                delay = min(delay, max(UNWATCHED_POLL_S, 3 * (time.monotonic() - started)))
            await changes.wait(self._within_end_time(delay))

    def _within_end_time(self, delay: float) -> float:
        return delay if self.end_time is None else min(delay, max(0.0, self.end_time - time.time()))

    def _backoff(self, failures: int) -> float:
        """Seconds before the next try after ``failures`` failed checks in a row; never past ``end_time``."""
        delay = full_jitter(failures, self.poll_interval, max(self.poll_interval, MAX_ERROR_BACKOFF_S))
        if self.end_time is not None:
            delay = min(delay, max(0.0, self.end_time - time.time()))
        return delay
