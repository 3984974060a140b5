"""Evictions and PodDisruptionBudgets.

Covers: an eviction without a budget deletes the pod (201 Success); a budget at its minimum refuses with
429 TooManyRequests and the real server's message and DisruptionBudget cause; unhealthy and Pending
pods go regardless; two budgets on one pod is a 500; ``faults.blocked_pdbs`` refuses; dryRun keeps the
pod; parallel evictions never overdraw a budget. PDB math (int and percentage minAvailable and
maxUnavailable, controller replicas as the expected count); the disruption controller's status and
its record of budget violations.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from twin import pdb as budgets
from twin.config import FAST
from twin.controllers.disruption import DisruptionController
from twin.faults import Faults
from twin.resources import DEPLOYMENTS, PDBS, PODS, REPLICASETS
from twin.store import Store


def _evict(core: kubernetes.client.CoreV1Api, name: str, namespace: str = "default", **kwargs: Any) -> Any:
    """The Status the server answered (the client would decode it as an Eviction)."""
    body = kubernetes.client.V1Eviction(metadata=kubernetes.client.V1ObjectMeta(name=name, namespace=namespace))
    resp = core.create_namespaced_pod_eviction(name, namespace, body, _preload_content=False, **kwargs)
    status = json.loads(resp.data)
    assert resp.status == status["code"]
    return kubernetes.client.V1Status(**{k: v for k, v in status.items() if k in ("kind", "status", "code")})


def _web_pods(objects: Any, count: int, ready: int | None = None) -> Any:
    rs = objects.replicaset("web", replicas=count, labels={"app": "web"})
    for i in range(count):
        objects.pod(f"web-{i}", f"n{i}", labels={"app": "web"}, owner=rs,
                    ready=ready is None or i < ready)
    return rs


def test_a_pod_without_a_budget_is_evicted(core: kubernetes.client.CoreV1Api, objects: Any,
                                           store: Store) -> None:
    objects.pod("lonely", "n1")
    status = _evict(core, "lonely")
    assert status.status == "Success" and status.code == 201
    assert store.get(PODS, "default", "lonely") is None


def test_a_budget_at_its_minimum_refuses_with_429(core: kubernetes.client.CoreV1Api, objects: Any,
                                                  store: Store) -> None:
    _web_pods(objects, 3)
    objects.pdb("web-pdb", {"app": "web"}, min_available=2)
    _evict(core, "web-0")
    with pytest.raises(ApiException) as err:
        _evict(core, "web-1")
    assert err.value.status == 429
    body = json.loads(err.value.body)
    assert body["reason"] == "TooManyRequests"
    assert body["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    assert body["details"]["causes"] == [{"reason": "DisruptionBudget", "message":
                                          "The disruption budget web-pdb needs 2 healthy pods and has 2 currently"}]
    assert store.get(PODS, "default", "web-1") is not None


@pytest.mark.parametrize(("pod", "expected_code"), [
    pytest.param("web-2", 201, id="unhealthy-pod-while-budget-is-met"),
    pytest.param("pending", 201, id="pending-pod"),
])
def test_pods_that_are_not_healthy_can_go(core: kubernetes.client.CoreV1Api, objects: Any, store: Store,
                                          pod: str, expected_code: int) -> None:
    _web_pods(objects, 3, ready=2)
    objects.pod("pending", None, labels={"app": "web"})
    objects.pdb("web-pdb", {"app": "web"}, min_available=2)
    assert _evict(core, pod).code == expected_code
    assert store.get(PODS, "default", pod) is None


def test_two_budgets_on_one_pod_is_500(core: kubernetes.client.CoreV1Api, objects: Any) -> None:
    _web_pods(objects, 2)
    objects.pdb("a", {"app": "web"}, max_unavailable=1)
    objects.pdb("b", {"app": "web"}, max_unavailable=1)
    with pytest.raises(ApiException) as err:
        _evict(core, "web-0")
    assert err.value.status == 500
    assert "more than one PodDisruptionBudget" in json.loads(err.value.body)["message"]


def test_a_blocked_budget_always_refuses(core: kubernetes.client.CoreV1Api, objects: Any,
                                         faults: Faults) -> None:
    _web_pods(objects, 3)
    objects.pdb("web-pdb", {"app": "web"}, max_unavailable=2)
    faults.blocked_pdbs.append("default/web-pdb")
    with pytest.raises(ApiException) as err:
        _evict(core, "web-0")
    assert err.value.status == 429
    faults.blocked_pdbs.clear()
    assert _evict(core, "web-0").code == 201


def test_dry_run_eviction_keeps_the_pod(core: kubernetes.client.CoreV1Api, objects: Any, store: Store) -> None:
    objects.pod("web", "n1")
    assert _evict(core, "web", dry_run="All").code == 201
    assert store.get(PODS, "default", "web") is not None


def test_evicting_a_missing_pod_is_404(core: kubernetes.client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as err:
        _evict(core, "nope")
    assert err.value.status == 404


def test_parallel_evictions_never_overdraw_a_budget(kube_client: kubernetes.client.ApiClient, objects: Any,
                                                    store: Store) -> None:
    _web_pods(objects, 6)
    objects.pdb("web-pdb", {"app": "web"}, max_unavailable=2)
    codes: list[int] = []

    def evict(i: int) -> None:
        try:
            codes.append(_evict(kubernetes.client.CoreV1Api(kube_client), f"web-{i}").code)
        except ApiException as e:
            codes.append(e.status)

    threads = [threading.Thread(target=evict, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [201, 201, 429, 429, 429, 429]
    assert len(store.list(PODS, "default")[0]) == 4


# ---- the math ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("spec", "replicas", "ready", "expected"), [
    pytest.param({"minAvailable": 2}, 3, 3, (3, 2, 3, 1), id="min-available-int"),
    pytest.param({"minAvailable": "50%"}, 4, 4, (4, 2, 4, 2), id="min-available-percent"),
    pytest.param({"minAvailable": "50%"}, 3, 3, (3, 2, 3, 1), id="min-available-percent-rounds-up"),
    pytest.param({"maxUnavailable": 1}, 3, 3, (3, 2, 3, 1), id="max-unavailable-int"),
    pytest.param({"maxUnavailable": 1}, 3, 2, (2, 2, 3, 0), id="max-unavailable-with-one-down"),
    pytest.param({"maxUnavailable": "34%"}, 3, 3, (3, 1, 3, 2), id="max-unavailable-percent-rounds-up"),
    pytest.param({"maxUnavailable": 0}, 2, 2, (2, 2, 2, 0), id="max-unavailable-zero"),
])
def test_budget_numbers(objects: Any, store: Store, spec: dict[str, Any], replicas: int, ready: int,
                        expected: tuple[int, int, int, int]) -> None:
    _web_pods(objects, replicas, ready=ready)
    pdb = store.create(PDBS, {"metadata": {"name": "p", "namespace": "default"},
                              "spec": {"selector": {"matchLabels": {"app": "web"}}, **spec}})
    healthy, desired, expected_pods = budgets.budget_numbers(store, pdb)
    assert (healthy, desired, expected_pods, budgets.disruptions_allowed(store, pdb)) == expected


def test_expected_count_follows_the_deployment_not_the_pods(objects: Any, store: Store) -> None:
    deployment = store.create(DEPLOYMENTS, {"metadata": {"name": "web", "namespace": "default"},
                                            "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}}}})
    rs = objects.replicaset("web-abc", replicas=4, labels={"app": "web"})
    rs = store.mutate(REPLICASETS, "default", "web-abc", lambda d: d["metadata"].update(ownerReferences=[
        {"kind": "Deployment", "name": "web", "uid": deployment["metadata"]["uid"], "controller": True}]))
    for i in range(2):  # two of four pods exist
        objects.pod(f"web-{i}", "n1", labels={"app": "web"}, owner=rs)
    pdb = objects.pdb("p", {"app": "web"}, max_unavailable=1)
    assert budgets.budget_numbers(store, pdb) == (2, 3, 4)
    assert budgets.disruptions_allowed(store, pdb) == 0


def test_selector_scope(objects: Any, store: Store) -> None:
    objects.pod("web", "n1", labels={"app": "web"})
    objects.pod("sys", "n1", labels={"app": "web"}, namespace="kube-system")
    everything = store.create(PDBS, {"metadata": {"name": "all", "namespace": "default"},
                                     "spec": {"selector": {}, "maxUnavailable": 1}})
    nothing = store.create(PDBS, {"metadata": {"name": "none", "namespace": "default"},
                                  "spec": {"maxUnavailable": 1}})
    pod = store.must_get(PODS, "default", "web")
    assert budgets.budgets_for(store, pod) == [everything]
    assert budgets.budgets_for(store, store.must_get(PODS, "kube-system", "sys")) == []
    assert nothing not in budgets.budgets_for(store, pod)


# ---- the disruption controller -------------------------------------------------------------------

def test_controller_writes_status_and_records_violations(objects: Any, store: Store) -> None:
    controller = DisruptionController(store, FAST, Faults())
    _web_pods(objects, 3)
    objects.pdb("web-pdb", {"app": "web"}, min_available=2)
    controller.reconcile()
    status = store.must_get(PDBS, "default", "web-pdb")["status"]
    assert {k: status[k] for k in ("currentHealthy", "desiredHealthy", "expectedPods", "disruptionsAllowed")} == {
        "currentHealthy": 3, "desiredHealthy": 2, "expectedPods": 3, "disruptionsAllowed": 1}
    assert status["conditions"][0]["status"] == "True" and status["conditions"][0]["lastTransitionTime"]
    rv = store.must_get(PDBS, "default", "web-pdb")["metadata"]["resourceVersion"]
    controller.reconcile()
    assert store.must_get(PDBS, "default", "web-pdb")["metadata"]["resourceVersion"] == rv  # idempotent

    store.delete(PODS, "default", "web-0")  # 2 healthy left: allowed, no violation
    assert controller.violations == []
    store.mutate(PODS, "default", "web-1", lambda p: p["status"]["conditions"][0].update(status="False"),
                 subresource="status")
    assert [(v["pdb"], v["pod"], v["event"], v["currentHealthy"], v["desiredHealthy"])
            for v in controller.violations] == [("default/web-pdb", "default/web-1", "unhealthy", 1, 2)]
    store.delete(PODS, "default", "web-2")
    assert [v["event"] for v in controller.violations] == ["unhealthy", "deleted"]
    controller.reconcile()
    status = store.must_get(PDBS, "default", "web-pdb")["status"]
    assert (status["disruptionsAllowed"], status["conditions"][0]["reason"]) == (0, "InsufficientPods")
