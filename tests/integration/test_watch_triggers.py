"""The waits' trigger re-checks on a Kubernetes watch event, not on a timer: with an hour between polls it
still ends as soon as the cluster reaches the state; a watch the server refuses leaves it polling."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from cilium_migration import checks, watches
from cilium_migration.triggers import ClusterCheckTrigger
from twin.cluster import Twin

HOUR = 3600.0


def trigger(check: str, arguments: dict[str, Any], *, poll_interval: float) -> ClusterCheckTrigger:
    return ClusterCheckTrigger(check=check, arguments=arguments, aws_conn_id="aws_default",
                               kubernetes_conn_id="kubernetes_default", region="us-west-1",
                               poll_interval=poll_interval)


def first_event(t: ClusterCheckTrigger, *, guard_s: float = 120.0) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        async for event in t.run():
            return dict(event.payload)
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(asyncio.wait_for(run(), guard_s))  # a guard against a hang, not a timing assertion


def scale(twin: Twin, group: str, size: int) -> None:
    twin.boto3_client("eks").update_nodegroup_config(clusterName=twin.cluster_name, nodegroupName=group,
                                                     scalingConfig={"minSize": 0, "maxSize": max(size, 1),
                                                                    "desiredSize": size})


def checks_then(monkeypatch: pytest.MonkeyPatch, after_first: Any) -> list[str]:
    """Record each check's verdict; call ``after_first`` once the first check has answered WAITING."""
    seen: list[str] = []
    real = checks.run

    def recording(name: str, clients: Any, **kwargs: Any) -> checks.Verdict:
        verdict = real(name, clients, **kwargs)
        seen.append(verdict.status)
        if len(seen) == 1:
            assert verdict.status == checks.WAITING, verdict.message
            threading.Thread(target=after_first, daemon=True).start()
        return verdict

    monkeypatch.setattr(checks, "run", recording)
    return seen


def test_a_node_registering_ends_the_wait_with_an_hour_between_polls(twin: Twin,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    seen = checks_then(monkeypatch, lambda: scale(twin, "ng-cilium", 1))
    event = first_event(trigger("nodes_registered", {"nodegroups": ["ng-cilium"], "count": 1},
                                poll_interval=HOUR))
    assert event["status"] == "success", event
    assert seen[-1] == checks.DONE
    assert 2 <= len(seen) < 20  # woken by events (node added, then its status), never by the hour's poll


def test_the_waits_watch_exactly_what_their_check_reads() -> None:
    assert watches.watched("nodes_ready", {"nodegroups": ["ng"], "count": 1}) == [
        watches.Watched("/api/v1/nodes")]
    assert watches.watched("cilium_rolled_out", {"namespace": "kube-system", "nodegroups": []}) == [
        watches.Watched("/apis/apps/v1/namespaces/kube-system/daemonsets"),
        watches.Watched("/apis/apps/v1/namespaces/kube-system/deployments"),
        watches.Watched("/api/v1/namespaces/kube-system/pods"), watches.Watched("/api/v1/nodes")]
    assert watches.watched("workloads_drained", {"nodegroups": ["ng-1"]}) == [
        watches.Watched("/api/v1/pods"), watches.Watched("/api/v1/nodes")]
    assert watches.watched("mesh_healthy", {"namespace": "default"}) == []  # goldpinger's results: polled
    assert watches.watched("nodegroups_at_size", {}) == []  # EKS: polled
    assert set(watches.WATCHES) <= set(checks.CHECKS)


def test_a_refused_watch_leaves_the_wait_polling(twin: Twin, monkeypatch: pytest.MonkeyPatch) -> None:
    async def refused(*args: Any, **kwargs: Any) -> None:
        raise watches.WatchError(403, 'nodes is forbidden: cannot "watch"')

    monkeypatch.setattr(watches, "follow", refused)
    seen = checks_then(monkeypatch, lambda: scale(twin, "ng-cilium", 0))
    event = first_event(trigger("nodes_registered", {"nodegroups": ["ng-cilium"], "count": 0},
                                poll_interval=0.2))
    assert event["status"] == "success", event
    assert len(seen) >= 2
