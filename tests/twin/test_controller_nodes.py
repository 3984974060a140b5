"""Kubelet, node lifecycle and cilium-operator controllers, driven through ``reconcile()`` on a Store.

Covers: pods wait in ContainerCreating until a CNI agent is Ready on their node, then run with an IP
from the node's range and the CNI annotation (the CNI whose config file sorts first, 05-cilium before
10-aws; a wired pod keeps its CNI); host-network pods; the ``pod_start_s`` delay; pods of deleted nodes; nodes turning Ready only with a
Ready agent (after ``agent_ready_s``), the not-ready and unschedulable taints; the agent-never-ready
fault by node and by node group; the operator removing ``node.cilium.io/agent-not-ready`` only while it
runs, CiliumNode / CiliumEndpoint bookkeeping, and the unmanaged-pod watcher on and off.
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from twin.config import FAST
from twin.controllers.base import CNI_ANNOTATION, Controller, condition, pod_ready, run_until
from twin.controllers.cilium_operator import CiliumOperator
from twin.controllers.daemonsets import DaemonSetController
from twin.controllers.kubelet import Kubelet
from twin.controllers.nodelifecycle import NodeLifecycle
from twin.faults import Faults
from twin.resources import CILIUMENDPOINTS, CILIUMNODES, CONFIGMAPS, DAEMONSETS, NODES, PODS, REPLICASETS
from twin.store import Obj, Store, now_iso

CILIUM_TAINT = {"key": "node.cilium.io/agent-not-ready", "value": "true", "effect": "NoSchedule"}
NOT_READY_MESSAGE = ("container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady "
                     "message:Network plugin returns error: cni plugin not initialized")


def add_node(store: Store, index: int, *, group: str = "ng-1", taints: list[Obj] | None = None) -> str:
    """A node as the node-group controller registers it: NotReady, no CNI yet."""
    name = f"ip-192-168-1-{index}.us-west-1.compute.internal"
    stamp = now_iso()
    store.create(NODES, {
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                              "node.kubernetes.io/instance-type": "m5.large",
                                              "topology.kubernetes.io/zone": "us-west-1a",
                                              "eks.amazonaws.com/nodegroup": group}},
        "spec": {"providerID": f"aws:///us-west-1a/i-0{index:015x}", **({"taints": taints} if taints else {})},
        "status": {"addresses": [{"type": "InternalIP", "address": f"192.168.1.{index}"},
                                 {"type": "Hostname", "address": name}],
                   "allocatable": {"cpu": "2", "pods": "29"},
                   "conditions": [{"type": "Ready", "status": "False", "reason": "KubeletNotReady",
                                   "message": NOT_READY_MESSAGE, "lastHeartbeatTime": stamp,
                                   "lastTransitionTime": stamp}]},
    })
    return name


def add_agent(store: Store, node: str, cni: str, name: str | None = None) -> Obj:
    """A CNI agent pod bound to the node (not started: the kubelet starts it)."""
    labels = {"k8s-app": "cilium" if cni == "cilium" else "aws-node"}
    return store.create(PODS, {
        "metadata": {"name": name or f"{labels['k8s-app']}-{node.split('.')[0].rsplit('-', 1)[1]}",
                     "namespace": "kube-system",
                     "labels": labels},
        "spec": {"nodeName": node, "hostNetwork": True, "tolerations": [{"operator": "Exists"}],
                 "containers": [{"name": labels["k8s-app"], "image": f"{cni}:1"}]},
    })


def add_pod(store: Store, name: str, node: str, *, owner: Obj | None = None, host_network: bool = False,
            namespace: str = "default", labels: dict[str, str] | None = None) -> Obj:
    meta: Obj = {"name": name, "namespace": namespace, "labels": labels or {"app": name}}
    if owner is not None:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner["kind"], "controller": True,
                                    "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"]}]
    spec: Obj = {"nodeName": node, "containers": [{"name": "app", "image": "nginx:1.27"}],
                 "initContainers": [{"name": "init", "image": "busybox:1"}]}
    if host_network:
        spec["hostNetwork"] = True
    return store.create(PODS, {"metadata": meta, "spec": spec})


def pod(store: Store, name: str, namespace: str = "default") -> Obj:
    return store.must_get(PODS, namespace, name)


def node_ready(store: Store, name: str) -> bool:
    return (condition(store.must_get(NODES, None, name), "Ready") or {}).get("status") == "True"


def taint_keys(store: Store, name: str) -> set[str]:
    return {t["key"] for t in store.must_get(NODES, None, name)["spec"].get("taints") or []}


def settle(controllers: list[Controller], seconds: float = 0.3) -> None:
    """Reconcile for a while (for asserting that something does NOT happen)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for c in controllers:
            c.reconcile()
        time.sleep(0.005)


def make(store: Store, faults: Faults, *kinds: type[Controller]) -> list[Controller]:
    return [k(store, FAST, faults) for k in kinds]


def owner_rs(store: Store) -> Obj:
    return store.create(REPLICASETS, {"metadata": {"name": "web-abc", "namespace": "default"},
                                      "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                                               "template": {"metadata": {"labels": {"app": "web"}}, "spec": {}}}})


# ---- kubelet -------------------------------------------------------------------------------------

class TestKubelet:
    def test_pod_waits_in_container_creating_without_a_cni(self, store: Store, faults: Faults) -> None:
        node = add_node(store, 4)
        add_pod(store, "web", node)
        settle(make(store, faults, Kubelet))
        status = pod(store, "web")["status"]
        assert status["phase"] == "Pending"
        assert status["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}
        assert "podIP" not in status and CNI_ANNOTATION not in (pod(store, "web")["metadata"].get("annotations") or {})

    def test_pod_runs_wired_by_the_nodes_agent(self, store: Store, faults: Faults) -> None:
        node = add_node(store, 4)
        add_agent(store, node, "aws-cni")
        add_pod(store, "web", node)
        run_until(make(store, faults, Kubelet), lambda: pod_ready(pod(store, "web")), what="web Ready")
        p = pod(store, "web")
        assert p["metadata"]["annotations"][CNI_ANNOTATION] == "aws-cni"
        status = p["status"]
        assert status["podIP"].startswith("10.1.4.") and status["podIPs"] == [{"ip": status["podIP"]}]
        assert status["hostIP"] == "192.168.1.4" and status["startTime"]
        assert {c["type"]: c["status"] for c in status["conditions"]} == {
            "PodReadyToStartContainers": "True", "Initialized": "True", "Ready": "True",
            "ContainersReady": "True", "PodScheduled": "True"}
        [cs] = status["containerStatuses"]
        assert cs["ready"] and cs["started"] and cs["restartCount"] == 0 and cs["image"] == "nginx:1.27"
        assert cs["containerID"].startswith("containerd://") and "@sha256:" in cs["imageID"]
        assert cs["state"]["running"]["startedAt"]
        assert status["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"

    def test_cilium_wins_and_a_wired_pod_keeps_its_cni(self, store: Store, faults: Faults) -> None:
        node = add_node(store, 4)
        add_agent(store, node, "aws-cni")
        add_pod(store, "old", node)
        kubelet = make(store, faults, Kubelet)
        run_until(kubelet, lambda: pod_ready(pod(store, "old")), what="old Ready")
        add_agent(store, node, "cilium")
        run_until(kubelet, lambda: pod_ready(pod(store, "cilium-4", "kube-system")), what="cilium Ready")
        add_pod(store, "new", node)
        run_until(kubelet, lambda: pod_ready(pod(store, "new")), what="new Ready")
        assert pod(store, "old")["metadata"]["annotations"][CNI_ANNOTATION] == "aws-cni"
        assert pod(store, "new")["metadata"]["annotations"][CNI_ANNOTATION] == "cilium"
        assert pod(store, "old")["status"]["podIP"] != pod(store, "new")["status"]["podIP"]

    def test_host_network_pod_gets_the_node_ip_and_no_cni(self, store: Store, faults: Faults) -> None:
        node = add_node(store, 4)
        add_pod(store, "exporter", node, host_network=True)
        run_until(make(store, faults, Kubelet), lambda: pod_ready(pod(store, "exporter")), what="Ready")
        p = pod(store, "exporter")
        assert p["status"]["podIP"] == "192.168.1.4"
        assert CNI_ANNOTATION not in (p["metadata"].get("annotations") or {})

    def test_pod_starts_only_after_pod_start_s(self, store: Store, faults: Faults) -> None:
        node = add_node(store, 4)
        add_pod(store, "exporter", node, host_network=True)
        kubelet = Kubelet(store, replace(FAST, pod_start_s=0.3), faults)
        kubelet.reconcile()
        started = time.monotonic()
        run_until([kubelet], lambda: pod_ready(pod(store, "exporter")), what="Ready")
        assert time.monotonic() - started >= 0.25

    def test_pods_of_a_deleted_node_are_deleted(self, store: Store, faults: Faults) -> None:
        node = add_node(store, 4)
        add_pod(store, "web", node)
        store.delete(NODES, None, node)
        Kubelet(store, FAST, faults).reconcile()
        assert store.get(PODS, "default", "web") is None


# ---- node lifecycle ------------------------------------------------------------------------------

class TestNodeLifecycle:
    def test_node_turns_ready_only_with_a_running_agent(self, store: Store, faults: Faults) -> None:
        node = add_node(store, 4)
        chain = make(store, faults, Kubelet, NodeLifecycle)
        settle(chain, 0.2)
        assert not node_ready(store, node)
        assert "node.kubernetes.io/not-ready" in taint_keys(store, node)
        add_agent(store, node, "aws-cni")
        run_until(chain, lambda: node_ready(store, node), what="node Ready")
        ready = condition(store.must_get(NODES, None, node), "Ready") or {}
        assert (ready["reason"], ready["message"]) == ("KubeletReady", "kubelet is posting ready status")
        assert ready["lastTransitionTime"] and ready["lastHeartbeatTime"]
        assert "node.kubernetes.io/not-ready" not in taint_keys(store, node)

    def test_node_waits_agent_ready_s_after_the_agent(self, store: Store, faults: Faults) -> None:
        node = add_node(store, 4)
        add_agent(store, node, "aws-cni")
        kubelet = Kubelet(store, FAST, faults)
        run_until([kubelet], lambda: pod_ready(pod(store, "aws-node-4", "kube-system")), what="agent Ready")
        lifecycle = NodeLifecycle(store, replace(FAST, agent_ready_s=0.3), faults)
        lifecycle.reconcile()
        assert not node_ready(store, node)
        started = time.monotonic()
        run_until([lifecycle], lambda: node_ready(store, node), what="node Ready")
        assert time.monotonic() - started >= 0.25

    def test_losing_the_agent_makes_the_node_not_ready_again(self, store: Store, faults: Faults) -> None:
        node = add_node(store, 4)
        agent = add_agent(store, node, "aws-cni")
        chain = make(store, faults, Kubelet, NodeLifecycle)
        run_until(chain, lambda: node_ready(store, node), what="node Ready")
        first = (condition(store.must_get(NODES, None, node), "Ready") or {})["lastTransitionTime"]
        store.delete(PODS, "kube-system", agent["metadata"]["name"])
        run_until(chain, lambda: not node_ready(store, node), what="node NotReady")
        ready = condition(store.must_get(NODES, None, node), "Ready") or {}
        assert (ready["reason"], ready["message"]) == ("KubeletNotReady", NOT_READY_MESSAGE)
        assert ready["lastTransitionTime"] >= first
        assert "node.kubernetes.io/not-ready" in taint_keys(store, node)

    @pytest.mark.parametrize("blocked", [
        pytest.param("ip-192-168-1-5.us-west-1.compute.internal", id="by-node-name"),
        pytest.param("ng-cilium", id="by-nodegroup")])
    def test_agent_never_ready_fault_keeps_the_node_not_ready(self, store: Store, blocked: str) -> None:
        faults = Faults(agent_never_ready=[blocked])
        healthy = add_node(store, 4, group="ng-cilium" if blocked != "ng-cilium" else "ng-1")
        stuck = add_node(store, 5, group="ng-cilium")
        store.create(DAEMONSETS, {
            "metadata": {"name": "cilium", "namespace": "kube-system"},
            "spec": {"selector": {"matchLabels": {"k8s-app": "cilium"}},
                     "template": {"metadata": {"labels": {"k8s-app": "cilium"}},
                                  "spec": {"hostNetwork": True, "tolerations": [{"operator": "Exists"}],
                                           "containers": [{"name": "cilium-agent", "image": "cilium:1"}]}}}})
        chain = make(store, faults, DaemonSetController, Kubelet, NodeLifecycle)
        run_until(chain, lambda: node_ready(store, healthy), what="healthy node Ready")
        settle(chain, 0.3)
        assert not node_ready(store, stuck)
        agent = next(p for p in store.list(PODS, node_name=stuck)[0])
        assert agent["status"]["phase"] == "Running" and not pod_ready(agent)
        faults.agent_never_ready.clear()
        run_until(chain, lambda: node_ready(store, stuck), what="node Ready once the fault is lifted")

    def test_cordon_adds_the_unschedulable_taint_and_uncordon_removes_it(self, store: Store,
                                                                         faults: Faults) -> None:
        node = add_node(store, 4)
        lifecycle = NodeLifecycle(store, FAST, faults)
        store.mutate(NODES, None, node, lambda n: n["spec"].update(unschedulable=True))
        lifecycle.reconcile()
        taint = next(t for t in store.must_get(NODES, None, node)["spec"]["taints"]
                     if t["key"] == "node.kubernetes.io/unschedulable")
        assert taint["effect"] == "NoSchedule"
        store.mutate(NODES, None, node, lambda n: n["spec"].update(unschedulable=False))
        lifecycle.reconcile()
        assert "node.kubernetes.io/unschedulable" not in taint_keys(store, node)


# ---- cilium-operator -----------------------------------------------------------------------------

def add_operator(store: Store, node: str) -> Obj:
    return store.create(PODS, {
        "metadata": {"name": "cilium-operator-1", "namespace": "kube-system",
                     "labels": {"io.cilium/app": "operator", "name": "cilium-operator"}},
        "spec": {"nodeName": node, "hostNetwork": True, "containers": [{"name": "operator", "image": "op:1"}]}})


def watcher_config(store: Store, interval: str) -> None:
    store.create(CONFIGMAPS, {"metadata": {"name": "cilium-config", "namespace": "kube-system"},
                              "data": {"unmanaged-pod-watcher-interval": interval}})


class TestCiliumOperator:
    @pytest.mark.parametrize("with_operator", [pytest.param(True, id="operator-running"),
                                               pytest.param(False, id="no-operator")])
    def test_operator_removes_the_agent_not_ready_taint(self, store: Store, faults: Faults,
                                                        with_operator: bool) -> None:
        node = add_node(store, 4, group="ng-cilium", taints=[CILIUM_TAINT])
        add_agent(store, node, "cilium")
        if with_operator:
            add_operator(store, node)
        chain = make(store, faults, Kubelet, NodeLifecycle, CiliumOperator)
        run_until(chain, lambda: node_ready(store, node), what="node Ready")
        settle(chain, 0.2)
        assert ("node.cilium.io/agent-not-ready" in taint_keys(store, node)) is not with_operator
        network = condition(store.must_get(NODES, None, node), "NetworkUnavailable")
        assert (network is not None and network["reason"] == "CiliumIsUp") is with_operator

    def test_taint_stays_while_the_agent_is_not_ready(self, store: Store) -> None:
        faults = Faults(agent_never_ready=["ng-cilium"])
        node = add_node(store, 4, group="ng-cilium", taints=[dict(CILIUM_TAINT, effect="NoExecute")])
        add_agent(store, node, "cilium")
        add_operator(store, node)
        settle(make(store, faults, Kubelet, NodeLifecycle, CiliumOperator), 0.3)
        assert "node.cilium.io/agent-not-ready" in taint_keys(store, node)

    def test_ciliumnodes_and_endpoints_follow_nodes_and_cilium_pods(self, store: Store, faults: Faults) -> None:
        old, new = add_node(store, 4), add_node(store, 5, group="ng-cilium")
        add_agent(store, old, "aws-cni")
        add_agent(store, new, "cilium")
        add_operator(store, old)
        add_pod(store, "on-old", old)
        add_pod(store, "on-new", new)
        chain = make(store, faults, Kubelet, NodeLifecycle, CiliumOperator)
        run_until(chain, lambda: store.get(CILIUMENDPOINTS, "default", "on-new") is not None, what="CEP")
        assert [c["metadata"]["name"] for c in store.iter_all(CILIUMNODES)] == [new]
        assert store.must_get(CILIUMNODES, None, new)["spec"]["eni"]["instance-id"].startswith("i-0")
        assert store.get(CILIUMENDPOINTS, "default", "on-old") is None
        networking = store.must_get(CILIUMENDPOINTS, "default", "on-new")["status"]["networking"]
        assert networking == {"addressing": [{"ipv4": pod(store, "on-new")["status"]["podIP"]}],
                              "node": "192.168.1.5"}
        store.delete(PODS, "default", "on-new")
        store.delete(NODES, None, new)
        for c in chain:
            c.reconcile()
        assert list(store.iter_all(CILIUMENDPOINTS)) == [] and list(store.iter_all(CILIUMNODES)) == []

    @pytest.mark.parametrize(("interval", "restarted"), [
        pytest.param("1", True, id="enabled"), pytest.param("0", False, id="disabled")])
    def test_unmanaged_pod_watcher_deletes_aws_cni_wired_pods_only_when_enabled(
            self, store: Store, faults: Faults, interval: str, restarted: bool) -> None:
        # interval "1" is 1 s in the real cluster, 0.1 s at FAST timing
        watcher_config(store, interval)
        old, new = add_node(store, 4), add_node(store, 5, group="ng-cilium")
        add_agent(store, old, "aws-cni")
        add_agent(store, new, "cilium")
        add_operator(store, new)
        rs = owner_rs(store)
        add_pod(store, "web-old", old, owner=rs)
        add_pod(store, "web-new", new, owner=rs)
        add_pod(store, "bare", old)
        add_pod(store, "exporter", old, host_network=True, owner=rs)
        chain = make(store, faults, Kubelet, NodeLifecycle, CiliumOperator)
        run_until(chain, lambda: all(pod_ready(p) for p in store.iter_all(PODS)), what="all Running")
        settle(chain, 0.4)
        remaining = {p["metadata"]["name"] for p in store.list(PODS, "default")[0]}
        expected = {"web-new", "bare", "exporter"} | (set() if restarted else {"web-old"})
        assert remaining == expected
