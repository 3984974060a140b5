"""Which pod replaces an evicted one (``readiness.workload_of``, ``readiness.is_replacement``,
``workloads.unreplaced``), on plain objects.

Covers: a pod and its replacement share a workload: a Deployment across its ReplicaSets (by
``pod-template-hash``), a StatefulSet per ordinal, any other controller by kind and name; a replacement
has a UID not seen before the eviction and is Ready on a known node of the target CNI; one replacement
stands in for one evicted pod; a bare (forced) pod only has to be gone; a rollback's target is aws-cni.
"""

from __future__ import annotations

from typing import Any

import pytest

from cilium_migration import workloads
from cilium_migration.readiness import AWS_CNI, CILIUM, CNI_LABEL, workload_of

Obj = dict[str, Any]
AWS_NODE, CILIUM_NODE = "n-aws", "n-cilium"
NODES = [{"metadata": {"name": AWS_NODE, "labels": {CNI_LABEL: AWS_CNI}}},
         {"metadata": {"name": CILIUM_NODE, "labels": {}}}]
STS = {"kind": "StatefulSet", "name": "db", "uid": "sts-uid", "controller": True}


def rs(name: str) -> Obj:
    return {"kind": "ReplicaSet", "name": name, "uid": f"{name}-uid", "controller": True}


def pod(name: str, uid: str, node: str = CILIUM_NODE, owner: Obj | None = STS, *, ready: bool = True,
        labels: dict[str, str] | None = None) -> Obj:
    meta: Obj = {"name": name, "namespace": "default", "uid": uid, "labels": labels or {}}
    if owner is not None:
        meta["ownerReferences"] = [owner]
    return {"metadata": meta, "spec": {"nodeName": node},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": str(ready)}]}}


def web(name: str, uid: str, template_hash: str = "abc12", node: str = CILIUM_NODE) -> Obj:
    return pod(name, uid, node, rs(f"web-{template_hash}"), labels={"pod-template-hash": template_hash})


@pytest.mark.parametrize(("obj", "key"), [
    pytest.param(web("web-abc12-xyz", "u"), ("default", "Deployment", "web"), id="deployment-via-replicaset"),
    pytest.param(pod("web-x", "u", owner=rs("web-x1")), ("default", "ReplicaSet", "web-x1"),
                 id="replicaset-without-hash"),
    pytest.param(pod("db-1", "u"), ("default", "StatefulSet", "db", "db-1"), id="statefulset-ordinal"),
    pytest.param(pod("job-1", "u", owner={"kind": "Job", "name": "job", "controller": True}),
                 ("default", "Job", "job"), id="other-controller"),
    pytest.param(pod("bare", "u", owner=None), None, id="bare"),
])
def test_workload_of(obj: Obj, key: tuple[str, ...] | None) -> None:
    assert workload_of(obj) == key


@pytest.mark.parametrize(("now", "waiting"), [
    pytest.param([pod("db-0", "old")], True, id="same-name-same-uid-is-not-a-replacement"),
    pytest.param([pod("db-0", "new", AWS_NODE)], True, id="new-uid-on-an-aws-cni-node"),
    pytest.param([pod("db-0", "new", "n-unknown")], True, id="new-uid-on-an-unknown-node"),
    pytest.param([pod("db-0", "new", ready=False)], True, id="new-uid-not-ready"),
    pytest.param([pod("db-1", "new")], True, id="another-ordinal"),
    pytest.param([pod("db-0", "new")], False, id="same-name-new-uid-ready-on-cilium"),
])
def test_a_statefulset_pod_is_replaced_by_its_ordinal_with_a_new_uid(now: list[Obj], waiting: bool) -> None:
    evicted = pod("db-0", "old", AWS_NODE)
    batch = workloads.Batch((evicted,), frozenset({"old", "other"}))
    assert workloads.unreplaced(batch, now, NODES) == ([evicted] if waiting else [])


def test_a_deployment_pod_is_replaced_by_any_new_pod_of_its_deployment_one_for_one() -> None:
    evicted = (web("web-abc12-aaaaa", "a", node=AWS_NODE), web("web-abc12-bbbbb", "b", node=AWS_NODE))
    batch = workloads.Batch(evicted, frozenset({"a", "b", "c"}))
    stayed = web("web-abc12-ccccc", "c")  # Ready on Cilium, but there before: no replacement
    one_new = web("web-def34-ddddd", "d", template_hash="def34")  # from a newer ReplicaSet: counts
    assert workloads.unreplaced(batch, [stayed, one_new], NODES) == [evicted[1]]
    assert workloads.unreplaced(batch, [stayed, one_new, web("web-abc12-eeeee", "e")], NODES) == []


def test_a_bare_pod_only_has_to_be_gone() -> None:
    forced = pod("bare", "b", AWS_NODE, owner=None)
    batch = workloads.Batch((forced,), frozenset({"b"}))
    assert workloads.unreplaced(batch, [forced], NODES) == [forced]
    assert workloads.unreplaced(batch, [], NODES) == []


def test_moving_back_wants_replacements_on_aws_cni_nodes() -> None:
    evicted = pod("db-0", "old", CILIUM_NODE)
    batch = workloads.Batch((evicted,), frozenset({"old"}), cni=AWS_CNI)
    assert workloads.unreplaced(batch, [pod("db-0", "new", CILIUM_NODE)], NODES) == [evicted]
    assert workloads.unreplaced(batch, [pod("db-0", "new", AWS_NODE)], NODES) == []
    assert workloads.Batch((evicted,), frozenset()).cni == CILIUM
