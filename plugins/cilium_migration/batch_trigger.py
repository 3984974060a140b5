"""The wait for one eviction batch's replacements, in the triggerer.

``batch_replaced`` is a check like those of ``checks``: ``done`` once every evicted pod of the batch has
its replacement Ready on a node of the batch's CNI (``workloads.unreplaced``), else ``waiting``.
``BatchReplacedTrigger`` is ``ClusterCheckTrigger`` polling that check, with its error handling and
``end_time`` (the batch timeout). The check joins ``checks.CHECKS`` (where the trigger looks it up) only
when the trigger runs, in the triggerer: it is not one of the waits the sensors share.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import TriggerEvent

from cilium_migration import checks, workloads
from cilium_migration.clients import Clients
from cilium_migration.triggers import ClusterCheckTrigger

CHECK = "batch_replaced"


def batch_replaced(clients: Clients, *, batch: dict[str, Any]) -> checks.Verdict:
    """Every pod of ``batch`` (``workloads.Batch.to_dict()``) has its replacement Ready."""
    wanted = workloads.Batch.from_dict(batch)
    waiting = workloads.waiting_for_replacements(clients.core, wanted)
    if waiting:
        return checks.Verdict(checks.WAITING, f"{len(waiting)} of {len(wanted.evicted)} evicted pod(s) without a "
                                              f"replacement Ready on a {wanted.cni} node: "
                                              f"{workloads.listed(waiting)}")
    return checks.Verdict(checks.DONE, f"{len(wanted.evicted)} pod(s) replaced on {wanted.cni} nodes")


class BatchReplacedTrigger(ClusterCheckTrigger):
    """Wait until a batch's replacements are Ready (``ClusterCheckTrigger`` on ``batch_replaced``)."""

    def __init__(self, *, batch: dict[str, Any], aws_conn_id: str, kubernetes_conn_id: str, region: str | None,
                 poll_interval: float = 10.0, max_errors: int = 10, end_time: float | None = None) -> None:
        super().__init__(check=CHECK, arguments={"batch": batch}, aws_conn_id=aws_conn_id,
                         kubernetes_conn_id=kubernetes_conn_id, region=region, poll_interval=poll_interval,
                         max_errors=max_errors, end_time=end_time)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        checks.CHECKS.setdefault(CHECK, batch_replaced)
        async for event in super().run():
            yield event

    def serialize(self) -> tuple[str, dict[str, Any]]:
        _, kwargs = super().serialize()
        kwargs.pop("check")
        kwargs["batch"] = kwargs.pop("arguments")["batch"]
        return "cilium_migration.batch_trigger.BatchReplacedTrigger", kwargs
