"""The workload move one batch at a time, against a twin: a batch evicted with ``workloads.evict_batch``,
its wait carried to the triggerer as ``Batch.to_dict()`` and done by ``BatchReplacedTrigger`` (the same
polling and error handling as every other deferred wait), over the Airflow connections."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import kubernetes
import pytest

from cilium_migration import checks, nodes, workloads
from cilium_migration.batch_trigger import BatchReplacedTrigger
from cilium_migration.readiness import AWS_CNI, CNI_LABEL, name_of
from tests.integration.test_evictions import grow, two_groups
from twin.cluster import Twin
from twin.config import FAST


async def _first_event(trigger: BatchReplacedTrigger) -> dict[str, Any]:
    async for event in trigger.run():
        return dict(event.payload)
    raise AssertionError("the trigger ended without an event")


def test_a_batch_waits_in_the_triggerer_until_its_replacements_are_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    with Twin(two_groups(), timing=FAST) as twin:
        suffix = uuid.uuid4().hex[:8]
        ids = {}
        for var, conn in twin.airflow_connections().items():
            conn_id = f"{var.removeprefix('AIRFLOW_CONN_').lower()}_{suffix}"
            monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
            ids[var] = conn_id
        core = kubernetes.client.CoreV1Api(twin.kube_client())
        old = nodes.nodegroup_nodes(core, ["ng-1"])
        names = [name_of(n) for n in old]
        nodes.label(core, old, CNI_LABEL, AWS_CNI)
        nodes.set_cordoned(core, nodes.nodegroup_nodes(core, ["ng-1"]), True)
        grow(twin, core, "ng-2", 2)

        pods = workloads.movable(core, names)
        changes, batch = workloads.evict_batch(core, pods[:2], deadline=time.monotonic() + 30)
        assert batch is not None and [c.name for c in changes] == [name_of(p) for p in pods[:2]]
        carried = json.loads(json.dumps(batch.to_dict()))  # what the trigger's kwargs hold
        assert workloads.Batch.from_dict(carried).seen_uids == batch.seen_uids
        trigger = BatchReplacedTrigger(batch=carried, aws_conn_id=ids["AIRFLOW_CONN_AWS_DEFAULT"],
                                       kubernetes_conn_id=ids["AIRFLOW_CONN_KUBERNETES_DEFAULT"], region=twin.region,
                                       poll_interval=0.2, end_time=time.time() + 60)
        path, kwargs = trigger.serialize()
        assert path == "cilium_migration.batch_trigger.BatchReplacedTrigger"
        assert BatchReplacedTrigger(**kwargs).serialize() == (path, kwargs)

        monkeypatch.setattr(checks, "CHECKS", dict(checks.CHECKS))  # the trigger adds its check to a copy
        event = asyncio.run(_first_event(BatchReplacedTrigger(**kwargs)))

        assert event["status"] == "success", event
        assert "2 pod(s) replaced" in event["message"]
        left = {name_of(p) for p in workloads.movable(core, names)}
        assert not left & {c.name for c in changes}  # replaced on the other group's nodes
