"""Evictions against the twin: a PodDisruptionBudget's 429 is retried until the timeout and never forced
by default; with ``force`` the pod is deleted; DaemonSet pods are never touched; dry run moves nothing.
A StatefulSet's pods (same names after eviction) are moved by UID: each batch waits for new UIDs Ready
on a node of the target CNI, within the budget, with no violation recorded."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest
import requests

from cilium_migration import nodes, workloads
from cilium_migration.errors import TemporaryError
from cilium_migration.readiness import AWS_CNI, CNI_LABEL, name_of, node_ready
from twin.cluster import Twin
from twin.config import FAST
from twin.scenario import ClusterSpec, NodeGroupSpec, Scenario, load_scenario


@pytest.fixture
def twin() -> Iterator[Twin]:
    t = Twin(load_scenario("default"), timing=FAST)
    t.start()
    try:
        yield t
    finally:
        t.stop()


@pytest.fixture
def core(twin: Twin) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(twin.kube_client())


def web_pods(core: kubernetes.client.CoreV1Api) -> list[str]:
    return sorted(p.metadata.name for p in core.list_namespaced_pod("default", label_selector="app=web").items
                  if not p.metadata.deletion_timestamp)


def test_a_blocked_budget_is_retried_then_refused_and_never_forced(twin: Twin, core: kubernetes.client.CoreV1Api
                                                                   ) -> None:
    twin.faults.update({"blocked_pdbs": ["default/web"]})
    pod = next(p for p in workloads.workloads_on_nodes(core, [name_of(n) for n in nodes.list_nodes(core)])
               if name_of(p).startswith("web-"))
    before = web_pods(core)
    with pytest.raises(TemporaryError, match="PodDisruptionBudget forbids it"):
        workloads.evict(core, pod, deadline=time.monotonic() + 0.5, sleep=lambda s: time.sleep(0.05))
    attempts = [r for r in twin.api.request_log if r.subresource == "eviction" and r.name == name_of(pod)]
    assert len(attempts) >= 2 and all(r.code == 429 for r in attempts)
    assert web_pods(core) == before


def test_force_deletes_a_pod_the_budget_keeps_refusing(twin: Twin, core: kubernetes.client.CoreV1Api) -> None:
    twin.faults.update({"blocked_pdbs": ["default/web"]})
    pod = next(p for p in workloads.workloads_on_nodes(core, [name_of(n) for n in nodes.list_nodes(core)])
               if name_of(p).startswith("web-"))
    change = workloads.evict(core, pod, deadline=time.monotonic() + 0.2, force=True,
                             sleep=lambda s: time.sleep(0.05))
    assert change is not None and change.action == "delete (forced)"
    assert name_of(pod) not in web_pods(core)


def test_dry_run_moves_nothing_and_daemonset_pods_stay(twin: Twin, core: kubernetes.client.CoreV1Api) -> None:
    names = [name_of(n) for n in nodes.list_nodes(core)]
    before = {name_of(p) for p in workloads.pods_on_nodes(core, names)}
    changes = workloads.move(core, names, batch_size=3, batch_timeout=5, dry_run=True)
    assert changes and all(c.dry_run and c.action == "evict" for c in changes)
    moved = {c.name for c in changes}
    assert not any(n.startswith(("aws-node-", "kube-proxy-")) for n in moved)
    assert {name_of(p) for p in workloads.pods_on_nodes(core, names)} == before


# ---- a StatefulSet behind a PodDisruptionBudget ---------------------------------------------------

def two_groups() -> Scenario:
    """The default scenario plus ``ng-2``, an untainted group at 0 that is grown to take the moved pods.
    Only the ``cni`` label tells the plugin which CNI serves a node, so ``ng-2`` (unlabelled) stands for
    the Cilium group."""
    scenario = load_scenario("default")
    extra = NodeGroupSpec(name="ng-2", desired=0, min=0, max=2)
    return scenario.model_copy(update={"cluster": ClusterSpec(name="sts-move"),
                                       "nodegroups": [*scenario.nodegroups, extra]})


def db_pods(core: kubernetes.client.CoreV1Api) -> dict[str, Any]:
    return {p.metadata.name: p for p in core.list_namespaced_pod("default", label_selector="app=db").items}


def grow(twin: Twin, core: kubernetes.client.CoreV1Api, group: str, size: int) -> set[str]:
    """Scale a node group through EKS and wait for its nodes to be Ready; their names."""
    twin.boto3_client("eks").update_nodegroup_config(clusterName=twin.cluster_name, nodegroupName=group,
                                                     scalingConfig={"minSize": 0, "maxSize": size,
                                                                    "desiredSize": size})
    deadline = time.monotonic() + 30
    while True:
        ready = {name_of(n) for n in nodes.nodegroup_nodes(core, [group]) if node_ready(n)}
        if len(ready) == size:
            return ready
        assert time.monotonic() < deadline, f"{group}: {len(ready)}/{size} nodes Ready"
        time.sleep(0.1)


def test_moving_a_group_moves_a_statefulset_behind_its_budget_by_uid() -> None:
    """db-0 and db-1 keep their names when evicted: the batch waits for new UIDs Ready on the other
    group's nodes, the budget (maxUnavailable 1) refuses the second eviction until the first pod is back,
    and the move completes without a recorded violation."""
    with Twin(two_groups(), timing=FAST) as twin:
        core = kubernetes.client.CoreV1Api(twin.kube_client())
        old = nodes.nodegroup_nodes(core, ["ng-1"])
        names = [name_of(n) for n in old]
        before = {name: pod.metadata.uid for name, pod in db_pods(core).items()}
        assert sorted(before) == ["db-0", "db-1"]
        assert all(p.spec.node_name in names for p in db_pods(core).values())
        nodes.label(core, old, CNI_LABEL, AWS_CNI)
        nodes.set_cordoned(core, nodes.nodegroup_nodes(core, ["ng-1"]), True)
        new_nodes = grow(twin, core, "ng-2", 2)

        changes = workloads.move(core, names, batch_size=2, batch_timeout=30, poll=0.1)

        assert {"db-0", "db-1"} <= {c.name for c in changes}
        assert workloads.workloads_on_nodes(core, names) == []
        after = db_pods(core)
        assert sorted(after) == ["db-0", "db-1"]
        for name, pod in after.items():
            assert pod.metadata.uid != before[name]
            assert pod.spec.node_name in new_nodes
            assert pod.status.phase == "Running" and any(
                c.type == "Ready" and c.status == "True" for c in pod.status.conditions)
        refused = [r.name for r in twin.api.request_log if r.subresource == "eviction" and r.code == 429]
        assert "db-1" in refused, "the budget held db-1 back until db-0 was Ready again"
        violations = requests.get(f"{twin.kube_url}/_twin/disruptions",
                                  headers={"Authorization": f"Bearer {twin.token}"}, timeout=10).json()
        assert violations == {"items": []}

