"""Readiness rules on plain objects: nodes, pods, DaemonSets, Deployments, node groups."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from cilium_migration import readiness as r


def node(name: str = "n1", *, ready: bool = True, taints: Sequence[str] = (), labels: dict | None = None,
         cordoned: bool = False) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}},
            "spec": {"taints": [{"key": k, "effect": "NoSchedule"} for k in taints], "unschedulable": cordoned},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def pod(name: str = "p", *, phase: str = "Running", ready: bool = True, node_name: str = "n1",
        owner: str | None = "ReplicaSet", annotations: dict | None = None, deleting: bool = False) -> dict:
    meta: dict[str, Any] = {"name": name, "namespace": "default", "annotations": annotations or {}}
    if owner:
        meta["ownerReferences"] = [{"kind": owner, "name": "o", "uid": "u1", "controller": True}]
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "spec": {"nodeName": node_name},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


@pytest.mark.parametrize(("obj", "ready", "cilium_ready"), [
    pytest.param(node(), True, True, id="ready-untainted"),
    pytest.param(node(ready=False), False, False, id="not-ready"),
    pytest.param(node(taints=[r.AGENT_NOT_READY_TAINT]), True, False, id="ready-but-agent-taint"),
    pytest.param({"metadata": {"name": "x"}}, False, False, id="no-status"),
])
def test_node_readiness(obj: dict, ready: bool, cilium_ready: bool) -> None:
    assert r.node_ready(obj) is ready
    assert r.cilium_node_ready(obj) is cilium_ready


def test_a_nodes_cni_is_aws_only_when_labelled() -> None:
    assert r.node_cni(node(labels={"cni": "aws-cni"})) == "aws-cni"
    assert r.node_cni(node()) == "cilium"
    assert r.node_cni(None) == "cilium"


def test_node_summary_names_state_group_and_cni() -> None:
    n = node("ip-1", ready=False, cordoned=True, taints=[r.AGENT_NOT_READY_TAINT],
             labels={r.NODEGROUP_LABEL: "ng-cilium"})
    assert r.node_summary(n) == "ip-1 (ng-cilium, cilium): NotReady, SchedulingDisabled, agent-not-ready"


@pytest.mark.parametrize(("obj", "ready"), [
    pytest.param(pod(), True, id="running-ready"),
    pytest.param(pod(phase="Pending", ready=False), False, id="pending"),
    pytest.param(pod(ready=False), False, id="running-not-ready"),
    pytest.param(pod(deleting=True), False, id="terminating"),
])
def test_pod_ready(obj: dict, ready: bool) -> None:
    assert r.pod_ready(obj) is ready


@pytest.mark.parametrize(("obj", "workload"), [
    pytest.param(pod(), True, id="replicaset-pod"),
    pytest.param(pod(owner=None), True, id="bare-pod"),
    pytest.param(pod(owner="DaemonSet"), False, id="daemonset-pod"),
    pytest.param(pod(annotations={r.MIRROR_ANNOTATION: "x"}), False, id="mirror-pod"),
    pytest.param(pod(phase="Succeeded"), False, id="finished-pod"),
])
def test_workload_pods_exclude_daemonset_mirror_and_finished(obj: dict, workload: bool) -> None:
    assert r.is_workload_pod(obj) is workload


def test_workload_pods_on_selects_by_node_and_sorts() -> None:
    pods = [pod("b", node_name="n1"), pod("a", node_name="n1"), pod("c", node_name="n2"),
            pod("d", node_name="n1", owner="DaemonSet")]
    assert [p["metadata"]["name"] for p in r.workload_pods_on(pods, ["n1"])] == ["a", "b"]


def ds(generation: int = 2, observed: int = 2, desired: int = 3, updated: int = 3, available: int = 3) -> dict:
    return {"metadata": {"generation": generation},
            "status": {"observedGeneration": observed, "desiredNumberScheduled": desired,
                       "updatedNumberScheduled": updated, "numberAvailable": available}}


@pytest.mark.parametrize(("obj", "done"), [
    pytest.param(ds(), True, id="rolled-out"),
    pytest.param(ds(observed=1), False, id="spec-not-observed"),
    pytest.param(ds(updated=2), False, id="not-all-updated"),
    pytest.param(ds(available=2), False, id="not-all-available"),
    pytest.param(ds(desired=0, updated=0, available=0), True, id="nothing-scheduled"),
])
def test_daemonset_rolled_out(obj: dict, done: bool) -> None:
    assert r.daemonset_rolled_out(obj) is done


def dep(replicas: int = 5, **status: int) -> dict:
    full = {"observedGeneration": 3, "replicas": replicas, "updatedReplicas": replicas,
            "readyReplicas": replicas, "availableReplicas": replicas}
    full.update({k.removeprefix("status_"): v for k, v in status.items()})
    return {"metadata": {"generation": 3}, "spec": {"replicas": replicas}, "status": full}


@pytest.mark.parametrize(("obj", "done"), [
    pytest.param(dep(), True, id="rolled-out"),
    pytest.param(dep(observedGeneration=2), False, id="spec-not-observed"),
    pytest.param(dep(status_replicas=6), False, id="old-pods-still-there"),
    pytest.param(dep(readyReplicas=4), False, id="one-not-ready"),
])
def test_deployment_rolled_out(obj: dict, done: bool) -> None:
    assert r.deployment_rolled_out(obj) is done


@pytest.mark.parametrize(("ng", "size", "done"), [
    pytest.param({"status": "ACTIVE", "scalingConfig": {"desiredSize": 3}}, 3, True, id="active-at-size"),
    pytest.param({"status": "UPDATING", "scalingConfig": {"desiredSize": 3}}, 3, False, id="updating"),
    pytest.param({"status": "ACTIVE", "scalingConfig": {"desiredSize": 0}}, 3, False, id="wrong-size"),
])
def test_nodegroup_at_size(ng: dict, size: int, done: bool) -> None:
    assert r.nodegroup_at_size(ng, size) is done


@pytest.mark.parametrize(("tolerations", "movable"), [
    pytest.param([{"operator": "Exists"}], False, id="tolerates-everything"),
    pytest.param([{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}],
                 False, id="tolerates-cordon"),
    pytest.param([{"key": "CriticalAddonsOnly", "operator": "Exists"}], True, id="coredns-style"),
    pytest.param([{"operator": "Exists", "effect": "NoExecute"}], True, id="noexecute-only"),
])
def test_pods_that_tolerate_cordons_are_not_moved(tolerations: list, movable: bool) -> None:
    p = pod()
    p["spec"]["tolerations"] = tolerations
    assert r.is_workload_pod(p) is movable
