"""The StatefulSet controller, driven through ``reconcile()`` on a Store (with the scheduler and kubelets),
and StatefulSet pods under evictions and PodDisruptionBudgets through the API server.

Covers: ordered creation (``<name>-i`` only once ``<name>-0..i-1`` are Running and Ready) and the pods'
names, labels, hostname, subdomain and controller reference; ``Parallel`` creating every ordinal at
once; an evicted or deleted pod coming back with the same name and a new UID; scaling down from the
highest ordinal, one at a time; a rollout restart replacing pods from the highest ordinal down, one at
a time, ending with every pod updated and ``currentRevision == updateRevision``; the status fields;
a PodDisruptionBudget counting the StatefulSet's replicas (not the pods that happen to exist), so the
Eviction API refuses the second pod while the first one's replacement is not Ready, and no violation
is recorded; the API server's defaults; ``kubectl get``, ``rollout restart`` and ``rollout status``
on StatefulSets; the twin waiting for StatefulSets before it has settled.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from tests.twin.test_controller_workloads import add_agent, add_node, controllers
from twin import pdb as budgets
from twin.cluster import Twin
from twin.config import FAST
from twin.controllers.base import Controller, pod_ready, run_until
from twin.controllers.disruption import DisruptionController
from twin.controllers.kubelet import Kubelet
from twin.controllers.scheduler import Scheduler
from twin.controllers.statefulsets import StatefulSetController, ordinal_of
from twin.faults import Faults
from twin.resources import NODES, PDBS, PODS, STATEFULSETS
from twin.scenario import ClusterSpec, load_scenario
from twin.store import Obj, Store, now_iso

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


def statefulset(name: str = "db", replicas: int = 3, **spec: Any) -> Obj:
    labels = {"app": name}
    return {"metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "serviceName": name, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": name, "image": "postgres:16"}]}},
                     **spec}}


def pods_of(store: Store, name: str = "db") -> dict[str, Obj]:
    """The StatefulSet's pods by name."""
    return {p["metadata"]["name"]: p for p in store.iter_all(PODS) if ordinal_of(name, p) is not None}


def status_of(store: Store, name: str = "db") -> Obj:
    return store.must_get(STATEFULSETS, "default", name).get("status") or {}


def rolled_out(store: Store, name: str = "db") -> bool:
    """What ``kubectl rollout status sts/<name>`` waits for (RollingUpdate, no partition)."""
    sts = store.must_get(STATEFULSETS, "default", name)
    s, replicas = sts.get("status") or {}, sts["spec"]["replicas"]
    return (s.get("observedGeneration", 0) >= sts["metadata"]["generation"] and s.get("replicas") == replicas
            and s.get("readyReplicas") == replicas and s.get("updatedReplicas") == replicas
            and s.get("currentRevision") == s.get("updateRevision"))


def ordered_ready_holds(pods: dict[str, Obj], name: str = "db") -> bool:
    """OrderedReady's invariant: the pods are ``<name>-0..k-1`` and only the highest may be not Ready."""
    ordinals = sorted(ordinal_of(name, p) or 0 for p in pods.values())
    not_ready = [ordinal_of(name, p) for p in pods.values() if not pod_ready(p)]
    return ordinals == list(range(len(ordinals))) and not_ready in ([], [len(ordinals) - 1])


def run_watching(chain: list[Controller], done: Callable[[], bool], check: Callable[[], None],
                 what: str, timeout: float = 10.0) -> None:
    """``run_until`` that calls ``check`` (assertions) after every round of passes."""
    def step() -> bool:
        check()
        return done()
    run_until(chain, step, timeout=timeout, what=what)


@pytest.fixture
def cluster(store: Store, faults: Faults) -> list[Controller]:
    """Three Ready aws-cni nodes, the StatefulSet controller, the scheduler and the kubelets."""
    for i in (4, 5, 6):
        add_agent(store, add_node(store, i), i)
    return controllers(store, faults, StatefulSetController, Scheduler, Kubelet)


class TestCreation:
    def test_ordinals_come_up_one_at_a_time_each_after_the_previous_is_ready(
            self, store: Store, cluster: list[Controller]) -> None:
        sts = store.create(STATEFULSETS, statefulset(replicas=3))
        seen_counts: set[int] = set()

        def check() -> None:
            pods = pods_of(store)
            assert ordered_ready_holds(pods), {n: pod_ready(p) for n, p in pods.items()}
            seen_counts.add(len(pods))
        run_watching(cluster, lambda: rolled_out(store), check, "db rolled out")
        assert seen_counts >= {1, 2, 3}
        pods = pods_of(store)
        assert sorted(pods) == ["db-0", "db-1", "db-2"]
        revision = status_of(store)["updateRevision"]
        for name, pod in pods.items():
            assert pod["spec"]["hostname"] == name and pod["spec"]["subdomain"] == "db"
            assert pod["metadata"]["labels"] == {
                "app": "db", "controller-revision-hash": revision, "statefulset.kubernetes.io/pod-name": name,
                "apps.kubernetes.io/pod-index": name.removeprefix("db-")}
            [ref] = pod["metadata"]["ownerReferences"]
            assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == (
                "StatefulSet", "db", sts["metadata"]["uid"], True)
            assert pod_ready(pod) and pod["spec"]["nodeName"]
        assert revision.startswith("db-")
        counts = {k: v for k, v in status_of(store).items() if k not in ("currentRevision", "updateRevision")}
        assert counts == {
            "observedGeneration": 1, "replicas": 3, "readyReplicas": 3, "currentReplicas": 3,
            "updatedReplicas": 3, "availableReplicas": 3, "collisionCount": 0}

    def test_parallel_creates_every_ordinal_at_once(self, store: Store, cluster: list[Controller]) -> None:
        store.create(STATEFULSETS, statefulset(replicas=3, podManagementPolicy="Parallel"))
        cluster[0].reconcile()  # the StatefulSet controller alone: nothing is Ready yet
        assert sorted(pods_of(store)) == ["db-0", "db-1", "db-2"]
        assert not any(pod_ready(p) for p in pods_of(store).values())
        run_until(cluster, lambda: rolled_out(store), what="db rolled out")

    def test_a_lower_ordinal_that_is_not_ready_holds_the_next_back(self, store: Store,
                                                                   faults: Faults) -> None:
        """No node takes pods: db-0 stays Pending, db-1 is never created."""
        add_node(store, 4, taints=[{"key": "node.cilium.io/agent-not-ready", "value": "true",
                                    "effect": "NoSchedule"}])
        chain = controllers(store, faults, StatefulSetController, Scheduler, Kubelet)
        store.create(STATEFULSETS, statefulset(replicas=2))
        for _ in range(20):
            for c in chain:
                c.reconcile()
        assert list(pods_of(store)) == ["db-0"] and not pods_of(store)["db-0"]["spec"].get("nodeName")
        assert status_of(store)["readyReplicas"] == 0 and status_of(store)["replicas"] == 1


class TestReplacement:
    def test_a_deleted_pod_comes_back_with_its_name_and_a_new_uid_on_an_uncordoned_node(
            self, store: Store, cluster: list[Controller]) -> None:
        store.create(STATEFULSETS, statefulset(replicas=2))
        run_until(cluster, lambda: rolled_out(store), what="db rolled out")
        victim, other = pods_of(store)["db-0"], pods_of(store)["db-1"]
        store.mutate(NODES, None, victim["spec"]["nodeName"], lambda n: n["spec"].update(unschedulable=True))
        store.delete(PODS, "default", "db-0")
        run_until(cluster, lambda: rolled_out(store) and "db-0" in pods_of(store), what="db-0 back")
        back = pods_of(store)["db-0"]
        assert back["metadata"]["uid"] != victim["metadata"]["uid"]
        assert back["spec"]["nodeName"] != victim["spec"]["nodeName"]
        assert pods_of(store)["db-1"]["metadata"]["uid"] == other["metadata"]["uid"], "the others stay"

    def test_scaling_down_removes_the_highest_ordinal_first_one_at_a_time(
            self, store: Store, cluster: list[Controller]) -> None:
        store.create(STATEFULSETS, statefulset(replicas=4))
        run_until(cluster, lambda: rolled_out(store), what="db rolled out")
        store.mutate(STATEFULSETS, "default", "db", lambda o: o["spec"].update(replicas=1))
        cluster[0].reconcile()
        assert sorted(pods_of(store)) == ["db-0", "db-1", "db-2"]
        run_until(cluster, lambda: rolled_out(store), what="scaled down")
        assert sorted(pods_of(store)) == ["db-0"]

    def test_a_failed_pod_is_replaced(self, store: Store, cluster: list[Controller]) -> None:
        store.create(STATEFULSETS, statefulset(replicas=1))
        run_until(cluster, lambda: rolled_out(store), what="db rolled out")
        uid = pods_of(store)["db-0"]["metadata"]["uid"]
        store.mutate(PODS, "default", "db-0", lambda p: p["status"].update(phase="Failed"),
                     subresource="status")
        run_until(cluster, lambda: rolled_out(store) and pods_of(store)["db-0"]["metadata"]["uid"] != uid,
                  what="db-0 replaced")


class TestRolloutRestart:
    def test_replaces_from_the_highest_ordinal_down_one_at_a_time(self, store: Store,
                                                                   cluster: list[Controller]) -> None:
        store.create(STATEFULSETS, statefulset(replicas=3))
        run_until(cluster, lambda: rolled_out(store), what="db rolled out")
        before = {n: p["metadata"]["uid"] for n, p in pods_of(store).items()}
        old_revision = status_of(store)["updateRevision"]

        def restart(obj: Obj) -> None:
            obj["spec"]["template"]["metadata"]["annotations"] = {RESTARTED_AT: now_iso()}
        store.mutate(STATEFULSETS, "default", "db", restart)
        replaced: list[str] = []

        def check() -> None:
            pods = pods_of(store)
            assert sum(1 for p in pods.values() if not pod_ready(p)) + 3 - len(pods) <= 1, "maxUnavailable 1"
            replaced.extend(n for n, p in sorted(pods.items())
                            if p["metadata"]["uid"] != before[n] and n not in replaced)
            if not rolled_out(store):
                assert status_of(store).get("currentRevision") in (old_revision, None)
        run_watching(cluster, lambda: rolled_out(store) and len(replaced) == 3, check, "restart rolled out")
        assert replaced == ["db-2", "db-1", "db-0"]
        status = status_of(store)
        assert status["currentRevision"] == status["updateRevision"] != old_revision
        assert status["updatedReplicas"] == status["currentReplicas"] == status["readyReplicas"] == 3
        assert all(p["metadata"]["annotations"][RESTARTED_AT] for p in pods_of(store).values())

    def test_on_delete_leaves_pods_alone_until_deleted(self, store: Store, cluster: list[Controller]) -> None:
        store.create(STATEFULSETS, statefulset(replicas=2, updateStrategy={"type": "OnDelete"}))
        run_until(cluster, lambda: rolled_out(store), what="db rolled out")
        before = {n: p["metadata"]["uid"] for n, p in pods_of(store).items()}
        stamp = {RESTARTED_AT: now_iso()}
        store.mutate(STATEFULSETS, "default", "db",
                     lambda o: o["spec"]["template"]["metadata"].update(annotations=stamp))
        for _ in range(10):
            for c in cluster:
                c.reconcile()
        assert {n: p["metadata"]["uid"] for n, p in pods_of(store).items()} == before
        assert status_of(store)["updatedReplicas"] == 0 and status_of(store)["currentReplicas"] == 2


# ---- evictions and budgets -----------------------------------------------------------------------

def _evict(core: kubernetes.client.CoreV1Api, name: str) -> int:
    meta = kubernetes.client.V1ObjectMeta(name=name, namespace="default")
    body = kubernetes.client.V1Eviction(metadata=meta)
    try:
        resp = core.create_namespaced_pod_eviction(name, "default", body, _preload_content=False)
    except ApiException as err:
        return int(err.status)
    return int(json.loads(resp.data)["code"])


@pytest.mark.parametrize("budget", [pytest.param({"maxUnavailable": 1}, id="max-unavailable-1"),
                                    pytest.param({"minAvailable": 1}, id="min-available-1")])
def test_the_eviction_api_holds_the_budget_for_statefulset_pods(
        store: Store, faults: Faults, cluster: list[Controller], core: kubernetes.client.CoreV1Api,
        budget: Obj) -> None:
    disruption = DisruptionController(store, FAST, faults)
    chain = [*cluster, disruption]
    store.create(STATEFULSETS, statefulset(replicas=2))
    store.create(PDBS, {"metadata": {"name": "db", "namespace": "default"},
                        "spec": {"selector": {"matchLabels": {"app": "db"}}, **budget}})
    run_until(chain, lambda: rolled_out(store), what="db rolled out")
    uids = {n: p["metadata"]["uid"] for n, p in pods_of(store).items()}

    assert _evict(core, "db-1") == 201
    cluster[0].reconcile()  # db-1 is back at once, Pending: the budget has one healthy pod of two
    assert pods_of(store)["db-1"]["metadata"]["uid"] != uids["db-1"]
    assert _evict(core, "db-0") == 429
    run_until(chain, lambda: rolled_out(store), what="db-1 Ready again")
    assert _evict(core, "db-0") == 201
    run_until(chain, lambda: rolled_out(store) and "db-0" in pods_of(store), what="db-0 Ready again")
    assert {n: p["metadata"]["uid"] for n, p in pods_of(store).items()}.keys() == uids.keys()
    assert all(p["metadata"]["uid"] != uids[n] for n, p in pods_of(store).items())
    assert disruption.violations == []
    status = store.must_get(PDBS, "default", "db")["status"]
    assert (status["currentHealthy"], status["expectedPods"]) == (2, 2)


def test_a_budget_expects_the_statefulsets_replicas_not_the_pods_that_exist(
        store: Store, cluster: list[Controller]) -> None:
    store.create(STATEFULSETS, statefulset(replicas=2))
    run_until(cluster, lambda: rolled_out(store), what="db rolled out")
    pdb = store.create(PDBS, {"metadata": {"name": "db", "namespace": "default"},
                              "spec": {"selector": {"matchLabels": {"app": "db"}}, "maxUnavailable": 1}})
    assert budgets.budget_numbers(store, pdb) == (2, 1, 2)
    store.delete(PODS, "default", "db-0")  # gone, not yet recreated
    assert budgets.budget_numbers(store, pdb) == (1, 1, 2)
    assert budgets.disruptions_allowed(store, pdb) == 0


# ---- the API and the twin ------------------------------------------------------------------------

def test_created_through_the_api_with_defaults_then_kubectl_get_restart_and_status(
        store: Store, cluster: list[Controller], apps: kubernetes.client.AppsV1Api, kubectl: Any) -> None:
    """As the real registry defaults them: replicas, OrderedReady, RollingUpdate (partition 0), which
    ``kubectl rollout status`` requires."""
    created = apps.create_namespaced_stateful_set("default", {"apiVersion": "apps/v1", "kind": "StatefulSet",
                                                              **statefulset(replicas=2)})
    assert (created.spec.pod_management_policy, created.spec.update_strategy.type,
            created.spec.update_strategy.rolling_update.partition) == ("OrderedReady", "RollingUpdate", 0)
    for controller in cluster:
        controller.start()
    try:
        kubectl("rollout", "status", "statefulset", "db", "--timeout=30s")
        lines = kubectl("get", "sts").stdout.splitlines()
        assert lines[0].split() == ["NAME", "READY", "AGE"] and lines[1].split()[:2] == ["db", "2/2"]
        assert kubectl("get", "statefulset", "db", "-o", "wide").stdout.split()[:5] == [
            "NAME", "READY", "AGE", "CONTAINERS", "IMAGES"]
        before = {n: p["metadata"]["uid"] for n, p in pods_of(store).items()}
        kubectl("rollout", "restart", "statefulset", "db")
        status = kubectl("rollout", "status", "statefulset", "db", "--timeout=30s").stdout
        assert "partitioned roll out complete: 2 new pods have been updated" in status  # partition 0
    finally:
        for controller in cluster:
            controller.stop()
    assert all(p["metadata"]["uid"] != before[n] for n, p in pods_of(store).items())


def test_the_twin_has_not_settled_while_a_statefulset_is_not_rolled_out() -> None:
    scenario = load_scenario("default").model_copy(update={"cluster": ClusterSpec(name="sts-settle")})
    twin = Twin(scenario, timing=FAST)
    twin.start(run_controllers=False)
    try:
        assert "statefulset default/db not ready" in twin.unsettled()
        twin.settle_by_passes(timeout=30)
        assert twin.settled()
        db = [p for p in twin.store.iter_all(PODS) if ordinal_of("db", p) is not None]
        assert sorted(p["metadata"]["name"] for p in db) == ["db-0", "db-1"] and all(map(pod_ready, db))
    finally:
        twin.stop()
