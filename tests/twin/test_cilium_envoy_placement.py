"""The stand-in chart's DaemonSets under the twin's controllers: where cilium-envoy runs, and that it is
not taken for a CNI agent.

The DaemonSets are the ones the chart renders (``cilium.render``), put straight into a Store; the
DaemonSet, kubelet, node-lifecycle and cilium-operator controllers run through ``reconcile()`` (no
scheduler: daemon pods are placed by the DaemonSet controller, which applies the inter-pod affinity
filter itself).

Covers: with the migration's values (every component fenced off ``cni=aws-cni`` nodes) envoy runs on
each Cilium node, beside its agent, and nowhere else; envoy's required pod affinity to the agent keeps
an envoy pod Pending (unbound, ``PodScheduled=False`` with the scheduler's message) until an agent runs
on its node, and for good on a node no agent may use (the chart's default envoy.affinity on a mixed
cluster); a bound pod's required anti-affinity keeps a daemon pod off its node until it goes; an envoy
pod alone makes no node Ready, wires no pod and lets the operator remove no taint (an agent then does);
of the chart's pod templates only the agent's carries ``k8s-app=cilium``.
"""

from __future__ import annotations

from typing import Any

import pytest

from cilium_migration import cilium
from twin.config import FAST
from twin.controllers.base import CILIUM, agent_cni, labels_of, pod_ready, run_until
from twin.controllers.cilium_operator import CiliumOperator, is_agent_pod, is_operator_pod
from twin.controllers.daemonsets import DaemonSetController
from twin.controllers.kubelet import Kubelet
from twin.controllers.nodelifecycle import NodeLifecycle
from twin.controllers.scheduler import Scheduler
from twin.faults import Faults
from twin.resources import CILIUMNODES, DAEMONSETS, NODES, PODS, for_kind
from twin.store import Obj, Store, now_iso

CHART = "twin/charts/cilium"
NS = "kube-system"
AGENT_NOT_READY = {"key": "node.cilium.io/agent-not-ready", "value": "true", "effect": "NoSchedule"}
OLD, NEW_1, NEW_2 = "ip-192-168-1-11.us-west-1.compute.internal", "ip-192-168-2-21.us-west-1.compute.internal", \
    "ip-192-168-2-22.us-west-1.compute.internal"


def runbook(**overrides: Any) -> dict[str, Any]:
    return cilium.runbook_values(cluster_name="dc-migrate", region="us-west-1", overrides=overrides)


def add_node(store: Store, name: str, *, ready: bool, labels: dict[str, str] | None = None,
             taints: list[Obj] | None = None) -> None:
    ip = name.split(".")[0].removeprefix("ip-").replace("-", ".")
    spec: Obj = {"providerID": f"aws:///us-west-1a/i-0{ip.replace('.', ''):0>15}"}
    if taints:
        spec["taints"] = taints
    store.create(NODES, {
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                              **(labels or {})}},
        "spec": spec,
        "status": {"addresses": [{"type": "InternalIP", "address": ip}],
                   "allocatable": {"cpu": "2", "pods": "29"},
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                   "lastHeartbeatTime": now_iso(), "lastTransitionTime": now_iso()}]},
    })


def add_running_pod(store: Store, name: str, node: str, labels: dict[str, str], **spec: Any) -> Obj:
    return store.create(PODS, {
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": name, "image": f"{name}:1"}], **spec},
        "status": {"phase": "Running", "podIP": "192.168.1.11", "hostIP": "192.168.1.11",
                   "conditions": [{"type": "Ready", "status": "True"}]},
    })


def mixed_cluster(store: Store) -> None:
    """One aws-cni node with its agent (and the operator's pod), two new Cilium nodes, NotReady, tainted."""
    add_node(store, OLD, ready=True, labels={"cni": "aws-cni", "eks.amazonaws.com/nodegroup": "ng-1"})
    add_running_pod(store, "aws-node-old", OLD, {"k8s-app": "aws-node"}, hostNetwork=True)
    add_running_pod(store, "cilium-operator-0", OLD, {"io.cilium/app": "operator", "name": "cilium-operator"},
                    hostNetwork=True)
    for name in (NEW_1, NEW_2):
        add_node(store, name, ready=False, labels={"eks.amazonaws.com/nodegroup": "ng-cilium"},
                 taints=[AGENT_NOT_READY])


def install(store: Store, values: dict[str, Any], *, only: tuple[str, ...] = ("cilium", "cilium-envoy")) -> None:
    """The chart's DaemonSets named ``only`` and its cilium-config, created in the store."""
    for obj in cilium.render(CHART, values):
        rt = for_kind(obj["apiVersion"], obj["kind"])
        if (obj["kind"] == "DaemonSet" and obj["metadata"]["name"] in only) or (
                (obj["kind"], obj["metadata"]["name"]) == ("ConfigMap", "cilium-config")
                and store.get(rt, NS, "cilium-config") is None):
            store.create(rt, obj)


def pods(store: Store, k8s_app: str) -> list[Obj]:
    return [p for p in store.iter_all(PODS) if labels_of(p).get("k8s-app") == k8s_app]


def target(pod: Obj) -> str:
    from twin.controllers.daemonsets import target_node

    return target_node(pod)


def node(store: Store, name: str) -> Obj:
    found = store.get(NODES, None, name)
    assert found is not None
    return found


def cilium_ready(store: Store, name: str) -> bool:
    n = node(store, name)
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])
    return ready and not any(t["key"] == AGENT_NOT_READY["key"] for t in n["spec"].get("taints") or [])


def controllers(store: Store) -> list[Any]:
    return [k(store, FAST, Faults()) for k in (DaemonSetController, Scheduler, Kubelet, NodeLifecycle,
                                                CiliumOperator)]


def placement(store: Store) -> list[Any]:
    """The DaemonSet controller creates daemon pods; the scheduler binds those with inter-pod rules."""
    return [DaemonSetController(store, FAST, Faults()), Scheduler(store, FAST, Faults())]


def fenced() -> dict[str, Any]:
    """The migration's values with envoy fenced off aws-cni nodes (beside the chart's no-schedule term)."""
    fence = {"key": "cni", "operator": "NotIn", "values": ["aws-cni"]}
    no_schedule = {"key": "cilium.io/no-schedule", "operator": "NotIn", "values": ["true"]}
    return runbook(envoy={"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [no_schedule, fence]}]}}}})


def test_envoy_runs_beside_each_agent_on_the_cilium_nodes_only(store: Store) -> None:
    mixed_cluster(store)
    install(store, fenced())
    loop = controllers(store)

    def settled() -> bool:
        envoys = pods(store, "cilium-envoy")
        return (len(envoys) == 2 and all(pod_ready(p) for p in envoys)
                and cilium_ready(store, NEW_1) and cilium_ready(store, NEW_2))

    run_until(loop, settled, timeout=10, what="envoy Ready on both Cilium nodes, nodes Ready and untainted")
    agents = {p["spec"]["nodeName"] for p in pods(store, "cilium")}
    envoys = {p["spec"]["nodeName"] for p in pods(store, "cilium-envoy")}
    assert agents == envoys == {NEW_1, NEW_2}
    for p in pods(store, "cilium-envoy"):
        assert agent_cni(p) is None and not is_agent_pod(p) and not is_operator_pod(p)
        assert p["spec"]["hostNetwork"] is True and p["status"]["podIP"] == p["status"]["hostIP"]
    ds = store.get(DAEMONSETS, NS, "cilium-envoy")
    assert ds is not None
    assert {k: ds["status"][k] for k in ("desiredNumberScheduled", "currentNumberScheduled", "numberReady")} == {
        "desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberReady": 2}
    assert {cn["metadata"]["name"] for cn in store.iter_all(CILIUMNODES)} == {NEW_1, NEW_2}


def test_envoy_waits_for_an_agent_on_its_node(store: Store) -> None:
    """The chart's own envoy.affinity (no fence): the DaemonSet wants envoy on all three nodes; it runs on
    the two whose agent runs, and stays Pending on the aws-cni node, where no agent may go."""
    mixed_cluster(store)
    values = runbook(envoy={"affinity": None})
    install(store, values, only=("cilium-envoy",))
    for c in placement(store):
        c.reconcile()
    waiting = pods(store, "cilium-envoy")
    assert sorted(target(p) for p in waiting) == sorted([OLD, NEW_1, NEW_2])
    for p in waiting:
        assert not p["spec"].get("nodeName") and p["status"]["phase"] == "Pending"
        scheduled = next(c for c in p["status"]["conditions"] if c["type"] == "PodScheduled")
        assert (scheduled["status"], scheduled["reason"]) == ("False", "Unschedulable")
        assert scheduled["message"].startswith(
            "0/3 nodes are available: 1 node(s) didn't match pod affinity rules, "
            "2 node(s) didn't match Pod's node affinity/selector.")

    install(store, values, only=("cilium",))
    loop = controllers(store)
    run_until(loop, lambda: sum(pod_ready(p) for p in pods(store, "cilium-envoy")) == 2, timeout=10,
              what="envoy Ready beside the two agents")
    by_target = {target(p): p for p in pods(store, "cilium-envoy")}
    assert {by_target[n]["spec"].get("nodeName") for n in (NEW_1, NEW_2)} == {NEW_1, NEW_2}
    assert not by_target[OLD]["spec"].get("nodeName"), "no agent on the aws-cni node: envoy stays Pending"
    assert by_target[OLD]["status"]["phase"] == "Pending"
    for c in loop:
        c.reconcile()
    ds = store.get(DAEMONSETS, NS, "cilium-envoy")
    assert ds is not None
    assert (ds["status"]["desiredNumberScheduled"], ds["status"]["numberReady"],
            ds["status"]["numberUnavailable"]) == (3, 2, 1), "the rollout never completes on a mixed cluster"


def test_an_envoy_pod_alone_is_no_cni_agent(store: Store) -> None:
    add_node(store, NEW_1, ready=False, labels={"eks.amazonaws.com/nodegroup": "ng-cilium"},
             taints=[AGENT_NOT_READY])
    add_running_pod(store, "cilium-operator-0", NEW_1, {"io.cilium/app": "operator", "name": "cilium-operator"},
                    hostNetwork=True, tolerations=[{"operator": "Exists"}])
    envoy_ds = next(o for o in cilium.render(CHART, runbook())
                    if (o["kind"], o["metadata"]["name"]) == ("DaemonSet", "cilium-envoy"))
    envoy_labels = envoy_ds["spec"]["template"]["metadata"]["labels"]
    add_running_pod(store, "cilium-envoy-x", NEW_1, envoy_labels, hostNetwork=True)
    workload = store.create(PODS, {"metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
                                   "spec": {"nodeName": NEW_1, "containers": [{"name": "web", "image": "nginx"}]}})
    loop = [k(store, FAST, Faults()) for k in (Kubelet, NodeLifecycle, CiliumOperator)]
    for _ in range(20):
        for c in loop:
            c.reconcile()
    assert not cilium_ready(store, NEW_1), "no agent: NotReady, still tainted"
    assert list(store.iter_all(CILIUMNODES)) == []
    web = store.get(PODS, "default", workload["metadata"]["name"])
    assert web is not None and web["status"]["phase"] == "Pending", "nothing wires the pod"

    add_running_pod(store, "cilium-agent", NEW_1, {"k8s-app": "cilium"}, hostNetwork=True)  # the real agent

    def wired() -> bool:
        web = store.get(PODS, "default", "web")
        return cilium_ready(store, NEW_1) and web is not None and pod_ready(web)

    run_until(loop, wired, timeout=10, what="node Ready and the pod wired once an agent runs")
    web = store.get(PODS, "default", "web")
    assert web is not None and web["metadata"]["annotations"]["twin.cilium-migration.io/cni"] == CILIUM


@pytest.mark.parametrize("name", ["cilium-envoy", "hubble-relay", "cilium-operator"])
def test_only_the_agent_template_carries_the_agent_label(name: str) -> None:
    """The twin's controllers find agents by ``k8s-app=cilium``: of the chart's pod templates, only the
    agent's carries it (envoy and relay select it in their pod affinity, they do not carry it)."""
    templates = {o["metadata"]["name"]: o["spec"]["template"] for o in cilium.render(CHART, runbook())
                 if o["kind"] in ("DaemonSet", "Deployment")}
    assert templates["cilium"]["metadata"]["labels"]["k8s-app"] == "cilium"
    assert templates[name]["metadata"]["labels"].get("k8s-app") != "cilium"


def test_a_bound_pods_anti_affinity_keeps_the_daemon_pod_off_its_node(store: Store) -> None:
    """Symmetry, as the scheduler's filter: a pod already on the node that refuses k8s-app=cilium-envoy
    beside it keeps envoy Pending there until it goes."""
    mixed_cluster(store)
    hermit = add_running_pod(store, "hermit", NEW_1, {"app": "hermit"}, affinity={"podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [{
            "topologyKey": "kubernetes.io/hostname",
            "labelSelector": {"matchLabels": {"k8s-app": "cilium-envoy"}}}]}})
    install(store, fenced())
    loop = placement(store)
    run_until(loop, lambda: len(pods(store, "cilium")) == 2 and len(pods(store, "cilium-envoy")) == 2,
              what="agents and envoy pods created")
    for c in loop:
        c.reconcile()
    by_target = {target(p): p for p in pods(store, "cilium-envoy")}
    assert by_target[NEW_2]["spec"]["nodeName"] == NEW_2
    assert not by_target[NEW_1]["spec"].get("nodeName")
    scheduled = next(c for c in by_target[NEW_1]["status"]["conditions"] if c["type"] == "PodScheduled")
    assert "1 node(s) didn't satisfy existing pods anti-affinity rules" in scheduled["message"]
    assert "1 No preemption victims found for incoming pod" in scheduled["message"]

    store.delete(PODS, NS, hermit["metadata"]["name"])
    run_until(loop, lambda: all(p["spec"].get("nodeName") for p in pods(store, "cilium-envoy")),
              what="envoy bound once the pod refusing it is gone")
