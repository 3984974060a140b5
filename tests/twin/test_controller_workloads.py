"""Scheduler, DaemonSet and Deployment/ReplicaSet controllers, driven through ``reconcile()`` on a Store.

Covers: the scheduler's filters (cordon, taints incl. the implicit not-ready one, node affinity, pod
capacity, required anti-affinity) with the real "0/N nodes are available" message (reasons sorted as
"N reason" strings), and spreading to the least loaded node; DaemonSets following node affinity (the
aws-node fence), their default tolerations (cordoned yes, NotReady / agent-not-ready only when
tolerated), the pod shape they create, rolling updates within maxUnavailable, OnDelete, and status;
Deployments creating owned ReplicaSets and pods, recreating deleted pods on uncordoned nodes, scaling,
and rollout restarts within maxSurge / maxUnavailable until the status says complete.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from twin.config import FAST
from twin.controllers.base import CNI_ANNOTATION, Controller, pod_ready, run_until
from twin.controllers.daemonsets import DaemonSetController
from twin.controllers.deployments import DeploymentController
from twin.controllers.kubelet import Kubelet
from twin.controllers.scheduler import Scheduler
from twin.faults import Faults
from twin.resources import DAEMONSETS, DEPLOYMENTS, NODES, PODS, REPLICASETS
from twin.store import Obj, Store, now_iso

CILIUM_TAINT = {"key": "node.cilium.io/agent-not-ready", "value": "true", "effect": "NoSchedule"}
FENCE = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
    {"matchExpressions": [{"key": "cni", "operator": "In", "values": ["aws-cni"]}]}]}}}


# ---- objects in the conventions' shape ----------------------------------------------------------

def add_node(store: Store, index: int, *, ready: bool = True, taints: list[Obj] | None = None,
             labels: dict[str, str] | None = None, unschedulable: bool = False, pods: str = "29") -> str:
    ip = f"192.168.1.{index}"
    name = f"ip-192-168-1-{index}.us-west-1.compute.internal"
    spec: Obj = {"providerID": f"aws:///us-west-1a/i-0{index:015x}"}
    if taints:
        spec["taints"] = taints
    if unschedulable:
        spec["unschedulable"] = True
    store.create(NODES, {
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                              "eks.amazonaws.com/nodegroup": "ng-1", **(labels or {})}},
        "spec": spec,
        "status": {"addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
                   "allocatable": {"cpu": "2", "pods": pods}, "capacity": {"cpu": "2", "pods": pods},
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                   "reason": "KubeletReady" if ready else "KubeletNotReady",
                                   "lastHeartbeatTime": now_iso(), "lastTransitionTime": now_iso()}]},
    })
    return name


def add_agent(store: Store, node: str, index: int) -> Obj:
    """A Ready aws-node pod on the node, as the DaemonSet and kubelet would leave it."""
    return store.create(PODS, {
        "metadata": {"name": f"aws-node-{index}", "namespace": "kube-system", "labels": {"k8s-app": "aws-node"}},
        "spec": {"nodeName": node, "hostNetwork": True, "containers": [{"name": "aws-node", "image": "cni:1"}]},
        "status": {"phase": "Running", "podIP": f"192.168.1.{index}", "hostIP": f"192.168.1.{index}",
                   "conditions": [{"type": "Ready", "status": "True"}]},
    })


def add_pod(store: Store, name: str, **spec: Any) -> Obj:
    return store.create(PODS, {"metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
                               "spec": {"containers": [{"name": "c", "image": "busybox:1"}], **spec}})


def daemonset(name: str, *, spec: Obj | None = None, strategy: Obj | None = None,
              namespace: str = "kube-system") -> Obj:
    ds: Obj = {"metadata": {"name": name, "namespace": namespace},
               "spec": {"selector": {"matchLabels": {"k8s-app": name}},
                        "template": {"metadata": {"labels": {"k8s-app": name}},
                                     "spec": {"containers": [{"name": name, "image": f"{name}:1"}],
                                              **(spec or {})}}}}
    if strategy is not None:
        ds["spec"]["updateStrategy"] = strategy
    return ds


def deployment(name: str, replicas: int, strategy: Obj | None = None) -> Obj:
    d: Obj = {"metadata": {"name": name, "namespace": "default"},
              "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                       "template": {"metadata": {"labels": {"app": name}},
                                    "spec": {"containers": [{"name": name, "image": "nginx:1.27"}]}}}}
    if strategy is not None:
        d["spec"]["strategy"] = strategy
    return d


def pods_of(store: Store, prefix: str) -> list[Obj]:
    return [p for p in store.iter_all(PODS) if p["metadata"]["name"].startswith(prefix + "-")]


def node_of(store: Store, pod: Obj) -> Obj:
    node = store.get(NODES, None, pod["spec"]["nodeName"])
    assert node is not None
    return node


def pod_scheduled(pod: Obj) -> Obj:
    return next(c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled")


def controllers(store: Store, faults: Faults, *kinds: type[Controller]) -> list[Controller]:
    return [k(store, FAST, faults) for k in kinds]


# ---- scheduler -----------------------------------------------------------------------------------

class TestScheduler:
    def test_spreads_pods_to_the_least_loaded_node(self, store: Store, faults: Faults) -> None:
        nodes = [add_node(store, i) for i in (4, 5, 6)]
        for i in range(6):
            add_pod(store, f"web-{i}")
        Scheduler(store, FAST, faults).reconcile()
        placed = [p["spec"].get("nodeName") for p in pods_of(store, "web")]
        assert sorted(placed) == sorted(nodes * 2)
        assert all(pod_scheduled(p)["status"] == "True" for p in pods_of(store, "web"))

    @pytest.mark.parametrize(("node_kwargs", "reason"), [
        pytest.param({"unschedulable": True}, "1 node(s) were unschedulable", id="cordoned"),
        pytest.param({"taints": [CILIUM_TAINT]},
                     "1 node(s) had untolerated taint {node.cilium.io/agent-not-ready: true}", id="agent-not-ready"),
        pytest.param({"ready": False}, "1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }",
                     id="not-ready"),
        pytest.param({"labels": {"cni": "cilium"}}, "1 node(s) didn't match Pod's node affinity/selector",
                     id="node-affinity"),
        pytest.param({"pods": "1"}, "1 Too many pods", id="full"),
    ])
    def test_a_node_that_does_not_fit_leaves_the_pod_pending_with_the_real_message(
            self, store: Store, faults: Faults, node_kwargs: Obj, reason: str) -> None:
        node = add_node(store, 4, **node_kwargs)
        if node_kwargs.get("pods") == "1":
            add_agent(store, node, 4)
        add_pod(store, "web", affinity=FENCE if "labels" in node_kwargs else None)
        Scheduler(store, FAST, faults).reconcile()
        pod = store.must_get(PODS, "default", "web")
        assert not pod["spec"].get("nodeName")
        cond = pod_scheduled(pod)
        assert (cond["status"], cond["reason"]) == ("False", "Unschedulable")
        # Preemption could help only where capacity failed (it finds no lower-priority victim here).
        preemption = ("1 No preemption victims found for incoming pod" if reason == "1 Too many pods"
                      else "1 Preemption is not helpful for scheduling")
        assert cond["message"] == (f"0/1 nodes are available: {reason}. preemption: 0/1 nodes are available: "
                                   f"{preemption}.")

    def test_message_counts_every_reason(self, store: Store, faults: Faults) -> None:
        add_node(store, 4, taints=[CILIUM_TAINT])
        add_node(store, 5, taints=[CILIUM_TAINT])
        add_node(store, 6, unschedulable=True)
        add_pod(store, "web")
        Scheduler(store, FAST, faults).reconcile()
        assert pod_scheduled(store.must_get(PODS, "default", "web"))["message"] == (
            "0/3 nodes are available: 1 node(s) were unschedulable, 2 node(s) had untolerated taint "
            "{node.cilium.io/agent-not-ready: true}. preemption: 0/3 nodes are available: "
            "3 Preemption is not helpful for scheduling.")

    @pytest.mark.parametrize("tolerations", [
        pytest.param([{"key": "node.cilium.io/agent-not-ready", "operator": "Exists"}], id="key-exists"),
        pytest.param([{"operator": "Exists"}], id="everything"),
        pytest.param([{"key": "node.cilium.io/agent-not-ready", "value": "true", "effect": "NoSchedule"}],
                     id="key-value-effect"),
    ])
    def test_a_tolerating_pod_lands_on_a_tainted_node(self, store: Store, faults: Faults,
                                                      tolerations: list[Obj]) -> None:
        node = add_node(store, 4, taints=[CILIUM_TAINT])
        add_pod(store, "web", tolerations=tolerations)
        Scheduler(store, FAST, faults).reconcile()
        assert store.must_get(PODS, "default", "web")["spec"]["nodeName"] == node

    def test_cordoned_and_tainted_nodes_are_skipped_for_a_fitting_one(self, store: Store, faults: Faults) -> None:
        add_node(store, 4, unschedulable=True)
        add_node(store, 5, taints=[CILIUM_TAINT])
        free = add_node(store, 6)
        for i in range(3):
            add_pod(store, f"web-{i}")
        Scheduler(store, FAST, faults).reconcile()
        assert {p["spec"]["nodeName"] for p in pods_of(store, "web")} == {free}

    def test_required_anti_affinity_keeps_replicas_apart(self, store: Store, faults: Faults) -> None:
        nodes = {add_node(store, 4), add_node(store, 5)}
        anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"io.cilium/app": "operator"}},
             "topologyKey": "kubernetes.io/hostname"}]}}
        for i in range(3):
            store.create(PODS, {"metadata": {"name": f"op-{i}", "namespace": "kube-system",
                                             "labels": {"io.cilium/app": "operator"}},
                                "spec": {"affinity": anti, "containers": [{"name": "c", "image": "op:1"}]}})
        Scheduler(store, FAST, faults).reconcile()
        placed = [p["spec"].get("nodeName") for p in store.list(PODS, "kube-system")[0]]
        assert {n for n in placed if n} == nodes and placed.count(None) == 1


# ---- DaemonSets ----------------------------------------------------------------------------------

class TestDaemonSets:
    def test_aws_node_with_the_cni_fence_has_no_pod_on_an_unlabelled_node(self, store: Store,
                                                                           faults: Faults) -> None:
        old = {add_node(store, 4, labels={"cni": "aws-cni"}), add_node(store, 5, labels={"cni": "aws-cni"})}
        add_node(store, 6)
        store.create(DAEMONSETS, daemonset("aws-node", spec={"affinity": FENCE, "hostNetwork": True,
                                                              "tolerations": [{"operator": "Exists"}]}))
        DaemonSetController(store, FAST, faults).reconcile()
        assert {p["spec"]["nodeName"] for p in pods_of(store, "aws-node")} == old
        status = store.must_get(DAEMONSETS, "kube-system", "aws-node")["status"]
        assert (status["desiredNumberScheduled"], status["currentNumberScheduled"]) == (2, 2)

    def test_adding_the_fence_later_removes_the_pod_from_the_unlabelled_node(self, store: Store,
                                                                              faults: Faults) -> None:
        labelled = add_node(store, 4, labels={"cni": "aws-cni"})
        add_node(store, 5)
        store.create(DAEMONSETS, daemonset("aws-node", spec={"tolerations": [{"operator": "Exists"}]}))
        ds = DaemonSetController(store, FAST, faults)
        ds.reconcile()
        assert len(pods_of(store, "aws-node")) == 2

        def fence(obj: Obj) -> None:
            obj["spec"]["template"]["spec"]["affinity"] = FENCE
        store.mutate(DAEMONSETS, "kube-system", "aws-node", fence)
        run_until([ds], lambda: [p["spec"]["nodeName"] for p in pods_of(store, "aws-node")] == [labelled],
                  what="aws-node only on the labelled node")

    @pytest.mark.parametrize(("node_kwargs", "tolerations", "runs"), [
        pytest.param({"unschedulable": True}, None, True, id="cordoned-node"),
        pytest.param({"ready": False}, None, False, id="not-ready-node"),
        pytest.param({"ready": False}, [{"operator": "Exists"}], True, id="not-ready-node-tolerated"),
        pytest.param({"taints": [CILIUM_TAINT]}, None, False, id="agent-not-ready"),
        pytest.param({"taints": [CILIUM_TAINT]}, [{"operator": "Exists"}], True, id="agent-not-ready-tolerated"),
    ])
    def test_default_tolerations(self, store: Store, faults: Faults, node_kwargs: Obj,
                                 tolerations: list[Obj] | None, runs: bool) -> None:
        add_node(store, 4, **node_kwargs)
        store.create(DAEMONSETS, daemonset("goldpinger", spec={"tolerations": tolerations} if tolerations else {}))
        DaemonSetController(store, FAST, faults).reconcile()
        assert len(pods_of(store, "goldpinger")) == (1 if runs else 0)

    def test_daemon_pods_are_bound_owned_and_labelled_as_the_real_controller_does(
            self, store: Store, faults: Faults) -> None:
        node = add_node(store, 4)
        ds = store.create(DAEMONSETS, daemonset("kube-proxy", spec={"affinity": FENCE}))
        store.mutate(NODES, None, node, lambda n: n["metadata"]["labels"].update(cni="aws-cni"))
        DaemonSetController(store, FAST, faults).reconcile()
        [pod] = pods_of(store, "kube-proxy")
        assert pod["spec"]["nodeName"] == node
        assert pod["metadata"]["ownerReferences"] == [{
            "apiVersion": "apps/v1", "kind": "DaemonSet", "name": "kube-proxy", "uid": ds["metadata"]["uid"],
            "controller": True, "blockOwnerDeletion": True}]
        assert pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == {
            "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]}
        keys = {(t["key"], t["effect"]) for t in pod["spec"]["tolerations"]}
        assert {("node.kubernetes.io/not-ready", "NoExecute"),
                ("node.kubernetes.io/unschedulable", "NoSchedule")} <= keys
        assert set(pod["metadata"]["labels"]) == {"k8s-app", "controller-revision-hash", "pod-template-generation"}

    def test_pods_go_with_their_nodes(self, store: Store, faults: Faults) -> None:
        add_node(store, 4)
        gone = add_node(store, 5)
        store.create(DAEMONSETS, daemonset("kube-proxy"))
        ds = DaemonSetController(store, FAST, faults)
        ds.reconcile()
        store.delete(NODES, None, gone)
        ds.reconcile()
        assert [p["spec"]["nodeName"] for p in pods_of(store, "kube-proxy")] != [gone]
        assert len(pods_of(store, "kube-proxy")) == 1

    @pytest.mark.parametrize("max_unavailable", [
        pytest.param(1, id="one"), pytest.param(2, id="two"), pytest.param("50%", id="half")])
    def test_rolling_update_replaces_pods_within_max_unavailable(self, store: Store, faults: Faults,
                                                                 max_unavailable: int | str) -> None:
        for i in range(4, 8):
            add_node(store, i)
        strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": max_unavailable}}
        store.create(DAEMONSETS, daemonset("kube-proxy", spec={"hostNetwork": True}, strategy=strategy))
        chain = controllers(store, faults, DaemonSetController, Kubelet)
        run_until(chain, lambda: rollout_complete(store), what="first rollout")
        first = {p["metadata"]["uid"] for p in pods_of(store, "kube-proxy")}

        def new_image(obj: Obj) -> None:
            obj["spec"]["template"]["spec"]["containers"][0]["image"] = "kube-proxy:2"
        store.mutate(DAEMONSETS, "kube-system", "kube-proxy", new_image)
        allowed = 2 if max_unavailable in (2, "50%") else 1
        worst = 0

        def complete() -> bool:
            nonlocal worst
            available = {p["spec"]["nodeName"] for p in pods_of(store, "kube-proxy") if pod_ready(p)}
            worst = max(worst, 4 - len(available))
            return rollout_complete(store)
        run_until(chain, complete, what="rolling update")
        assert 1 <= worst <= allowed
        now = pods_of(store, "kube-proxy")
        assert not first & {p["metadata"]["uid"] for p in now}
        assert {p["spec"]["containers"][0]["image"] for p in now} == {"kube-proxy:2"}

    def test_on_delete_replaces_only_deleted_pods(self, store: Store, faults: Faults) -> None:
        add_node(store, 4)
        add_node(store, 5)
        store.create(DAEMONSETS, daemonset("kube-proxy", strategy={"type": "OnDelete"}))
        ds = DaemonSetController(store, FAST, faults)
        ds.reconcile()
        store.mutate(DAEMONSETS, "kube-system", "kube-proxy",
                     lambda o: o["spec"]["template"]["spec"]["containers"][0].update(image="kube-proxy:2"))
        ds.reconcile()
        assert {p["spec"]["containers"][0]["image"] for p in pods_of(store, "kube-proxy")} == {"kube-proxy:1"}
        store.delete(PODS, "kube-system", pods_of(store, "kube-proxy")[0]["metadata"]["name"])
        ds.reconcile()
        images = sorted(p["spec"]["containers"][0]["image"] for p in pods_of(store, "kube-proxy"))
        assert images == ["kube-proxy:1", "kube-proxy:2"]
        assert store.must_get(DAEMONSETS, "kube-system", "kube-proxy")["status"]["updatedNumberScheduled"] == 1


def rollout_complete(store: Store, name: str = "kube-proxy") -> bool:
    """What ``kubectl rollout status ds/<name>`` checks."""
    ds = store.must_get(DAEMONSETS, "kube-system", name)
    s = ds.get("status") or {}
    return (s.get("observedGeneration", 0) >= ds["metadata"]["generation"]
            and s.get("updatedNumberScheduled", 0) >= s.get("desiredNumberScheduled", 0)
            and s.get("numberAvailable", 0) >= s.get("desiredNumberScheduled", 0) > 0)


# ---- Deployments ---------------------------------------------------------------------------------

def deployment_complete(store: Store, name: str = "web") -> bool:
    """What ``kubectl rollout status deploy/<name>`` checks."""
    d = store.must_get(DEPLOYMENTS, "default", name)
    s = d.get("status") or {}
    replicas = d["spec"]["replicas"]
    return (s.get("observedGeneration", 0) >= d["metadata"]["generation"]
            and s.get("updatedReplicas", 0) == replicas and s.get("replicas", 0) == replicas
            and s.get("availableReplicas", 0) == replicas)


@pytest.fixture
def cluster(store: Store, faults: Faults) -> list[Controller]:
    """Three Ready aws-cni nodes and the controllers that run deployments on them."""
    for i in (4, 5, 6):
        add_agent(store, add_node(store, i), i)
    return controllers(store, faults, DeploymentController, Scheduler, Kubelet)


class TestDeployments:
    def test_replicaset_and_pods_are_named_labelled_and_owned(self, store: Store,
                                                              cluster: list[Controller]) -> None:
        d = store.create(DEPLOYMENTS, deployment("web", 3))
        run_until(cluster, lambda: deployment_complete(store), what="web rolled out")
        [rs] = list(store.iter_all(REPLICASETS))
        pod_hash = rs["metadata"]["labels"]["pod-template-hash"]
        assert rs["metadata"]["name"] == f"web-{pod_hash}"
        assert rs["metadata"]["ownerReferences"][0]["uid"] == d["metadata"]["uid"]
        assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", "pod-template-hash": pod_hash}
        pods = pods_of(store, "web")
        assert len(pods) == 3
        for pod in pods:
            assert pod["metadata"]["name"].startswith(f"web-{pod_hash}-")
            assert len(pod["metadata"]["name"]) == len(f"web-{pod_hash}-") + 5
            assert pod["metadata"]["ownerReferences"][0]["name"] == rs["metadata"]["name"]
            assert pod["metadata"]["annotations"][CNI_ANNOTATION] == "aws-cni"
        status = store.must_get(DEPLOYMENTS, "default", "web")["status"]
        conditions = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
        assert conditions == {"Available": ("True", "MinimumReplicasAvailable"),
                              "Progressing": ("True", "NewReplicaSetAvailable")}
        assert "unavailableReplicas" not in status

    def test_cordon_and_delete_moves_the_pod_to_an_uncordoned_node(self, store: Store,
                                                                    cluster: list[Controller]) -> None:
        store.create(DEPLOYMENTS, deployment("web", 3))
        run_until(cluster, lambda: deployment_complete(store), what="web rolled out")
        originals = {p["metadata"]["uid"] for p in pods_of(store, "web")}
        victim = pods_of(store, "web")[0]
        cordoned = victim["spec"]["nodeName"]
        store.mutate(NODES, None, cordoned, lambda n: n["spec"].update(unschedulable=True))
        store.delete(PODS, "default", victim["metadata"]["name"])
        run_until(cluster, lambda: deployment_complete(store) and len(pods_of(store, "web")) == 3,
                  what="replacement running")
        [replacement] = [p for p in pods_of(store, "web") if p["metadata"]["uid"] not in originals]
        assert replacement["spec"]["nodeName"] != cordoned
        assert pod_ready(replacement)

    @pytest.mark.parametrize(("surge", "unavailable"), [
        pytest.param(0, 1, id="surge0-unavailable1"),
        pytest.param(1, 0, id="surge1-unavailable0"),
        pytest.param("25%", "25%", id="defaults"),
    ])
    def test_rollout_restart_replaces_pods_within_surge_and_unavailability(
            self, store: Store, cluster: list[Controller], surge: int | str, unavailable: int | str) -> None:
        strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}
        store.create(DEPLOYMENTS, deployment("web", 4, strategy))
        run_until(cluster, lambda: deployment_complete(store), what="web rolled out")
        before = {p["metadata"]["uid"] for p in pods_of(store, "web")}

        def restart(obj: Obj) -> None:
            obj["spec"]["template"]["metadata"]["annotations"] = {"kubectl.kubernetes.io/restartedAt": now_iso()}
        store.mutate(DEPLOYMENTS, "default", "web", restart)
        max_surge, max_unavailable = (1, 1) if surge == "25%" else (int(surge), int(unavailable))
        worst_missing = worst_extra = 0

        def watch() -> bool:
            nonlocal worst_missing, worst_extra
            pods = pods_of(store, "web")
            worst_missing = max(worst_missing, 4 - sum(1 for p in pods if pod_ready(p)))
            worst_extra = max(worst_extra, len(pods) - 4)
            return deployment_complete(store) and not before & {p["metadata"]["uid"] for p in pods_of(store, "web")}
        run_until(cluster, watch, what="restart rolled out")
        assert worst_missing <= max_unavailable
        assert worst_extra <= max_surge
        assert len(list(store.iter_all(REPLICASETS))) == 2
        status = store.must_get(DEPLOYMENTS, "default", "web")["status"]
        assert status["updatedReplicas"] == status["readyReplicas"] == 4

    def test_a_readiness_probe_initial_delay_keeps_the_running_pod_unready_that_long(
            self, store: Store, cluster: list[Controller]) -> None:
        slow = deployment("slow", 1)
        slow["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] = {
            "httpGet": {"path": "/", "port": 80}, "initialDelaySeconds": 2}
        store.create(DEPLOYMENTS, slow)
        run_until(cluster, lambda: any(p["status"].get("phase") == "Running" for p in pods_of(store, "slow")),
                  what="slow running")
        running_at = time.monotonic()
        [pod] = pods_of(store, "slow")
        assert not pod_ready(pod)
        run_until(cluster, lambda: deployment_complete(store, "slow"), what="slow ready", timeout=10)
        assert time.monotonic() - running_at >= 1.0  # whole-second timestamps: at least delay - 1 s

    @pytest.mark.parametrize("replicas", [pytest.param(5, id="up"), pytest.param(1, id="down")])
    def test_replicas_change_scales(self, store: Store, cluster: list[Controller], replicas: int) -> None:
        store.create(DEPLOYMENTS, deployment("web", 3))
        run_until(cluster, lambda: deployment_complete(store), what="web rolled out")
        store.mutate(DEPLOYMENTS, "default", "web", lambda o: o["spec"].update(replicas=replicas))
        run_until(cluster, lambda: deployment_complete(store) and len(pods_of(store, "web")) == replicas,
                  what="scaled")
        assert len(list(store.iter_all(REPLICASETS))) == 1

    def test_pods_stay_pending_when_nothing_fits_and_status_says_so(self, store: Store, faults: Faults) -> None:
        add_node(store, 4, taints=[CILIUM_TAINT])
        chain = controllers(store, faults, DeploymentController, Scheduler, Kubelet)
        store.create(DEPLOYMENTS, deployment("web", 2))
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            for c in chain:
                c.reconcile()
        status = store.must_get(DEPLOYMENTS, "default", "web")["status"]
        assert status.get("availableReplicas", 0) == 0 and status["unavailableReplicas"] == 2
        assert {c["type"]: c["status"] for c in status["conditions"]} == {"Available": "False",
                                                                          "Progressing": "True"}
        assert all(not p["spec"].get("nodeName") for p in pods_of(store, "web"))

