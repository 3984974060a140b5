"""kube-scheduler: binds Pending pods to nodes.

Rules (the default profile's filters, in its order; a node fails on the first that rejects it):
- NodeUnschedulable: a cordoned node only takes pods tolerating ``node.kubernetes.io/unschedulable``.
- TaintToleration: every NoSchedule/NoExecute taint must be tolerated. A node whose Ready condition is
  not True counts as carrying ``node.kubernetes.io/not-ready:NoSchedule`` even before the node
  lifecycle controller adds it.
- NodeAffinity: ``nodeSelector`` and required node affinity.
- InterPodAffinity: required pod anti-affinity against pods already placed.
- NodeResourcesFit: the node's allocatable ``pods``.
Among the nodes left, the least loaded (fewest pods) wins, then the name. A pod that fits nowhere gets
``PodScheduled=False`` (reason Unschedulable) with the real message, e.g. "0/3 nodes are available:
3 node(s) had untolerated taint {node.cilium.io/agent-not-ready: true}. preemption: ...".
Binding sets ``spec.nodeName`` and then ``PodScheduled=True``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from twin.controllers.base import (
    NOT_READY_TAINT,
    UNSCHEDULABLE_TAINT,
    Controller,
    labels_of,
    node_ready,
    node_taints,
    pod_active,
    set_condition,
)
from twin.resources import NODES, PODS
from twin.selectors import labels_match, pod_fits_node_affinity, selector_from_dict, tolerates
from twin.store import Obj

SCHEDULER_NAME = "default-scheduler"
BLOCKING_EFFECTS = ("NoSchedule", "NoExecute")


def untolerated_taint(pod_spec: dict[str, Any], node: Obj) -> dict[str, Any] | None:
    """The first NoSchedule/NoExecute taint the pod does not tolerate (implicit not-ready included)."""
    taints = node_taints(node)
    if not node_ready(node) and not any(t.get("key") == NOT_READY_TAINT for t in taints):
        taints.append({"key": NOT_READY_TAINT, "effect": "NoSchedule"})
    for taint in taints:
        if taint.get("effect") in BLOCKING_EFFECTS and not tolerates(pod_spec.get("tolerations"), taint):
            return taint
    return None


def _anti_affinity_violated(pod: Obj, node: Obj, placed: list[tuple[Obj, Obj]]) -> bool:
    terms = (((pod["spec"].get("affinity") or {}).get("podAntiAffinity") or {})
             .get("requiredDuringSchedulingIgnoredDuringExecution") or [])
    for term in terms:
        key = term.get("topologyKey", "")
        value = labels_of(node).get(key)
        if value is None:
            continue
        selector = selector_from_dict(term.get("labelSelector"))
        namespaces = term.get("namespaces") or [pod["metadata"].get("namespace")]
        for other, other_node in placed:
            if (other["metadata"].get("namespace") in namespaces
                    and labels_of(other_node).get(key) == value
                    and term.get("labelSelector") is not None
                    and labels_match(selector, labels_of(other))):
                return True
    return False


def filter_reason(pod: Obj, node: Obj, load: int, placed: list[tuple[Obj, Obj]]) -> str | None:
    """Why the node cannot take the pod (the scheduler's wording), or None when it fits."""
    spec = pod.get("spec") or {}
    if (node.get("spec") or {}).get("unschedulable") and not tolerates(
            spec.get("tolerations"), {"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"}):
        return "node(s) were unschedulable"
    taint = untolerated_taint(spec, node)
    if taint is not None:
        return f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value') or ''}}}"
    if not pod_fits_node_affinity(spec, node):
        return "node(s) didn't match Pod's node affinity/selector"
    if _anti_affinity_violated(pod, node, placed):
        return "node(s) didn't match pod anti-affinity rules"
    capacity = int(((node.get("status") or {}).get("allocatable") or {}).get("pods") or 110)
    if load >= capacity:
        return "Too many pods"
    return None


def unschedulable_message(total: int, reasons: Counter[str]) -> str:
    parts = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
    detail = f": {parts}" if parts else ""
    return (f"0/{total} nodes are available{detail}. preemption: 0/{total} nodes are available: "
            f"{total} Preemption is not helpful for scheduling.")


class Scheduler(Controller):
    """Binds unscheduled pods of the default scheduler to the least loaded feasible node."""

    name = "scheduler"
    watches = (PODS, NODES)

    def reconcile(self) -> None:
        nodes = list(self.store.iter_all(NODES))
        by_name = {n["metadata"]["name"]: n for n in nodes}
        load: Counter[str] = Counter()
        placed: list[tuple[Obj, Obj]] = []
        pending: list[Obj] = []
        for pod in self.store.iter_all(PODS):
            node_name = pod.get("spec", {}).get("nodeName")
            if node_name:
                if pod_active(pod):
                    load[node_name] += 1
                    if node_name in by_name:
                        placed.append((pod, by_name[node_name]))
            elif (pod_active(pod) and pod.get("spec", {}).get("schedulerName", SCHEDULER_NAME)
                  in (SCHEDULER_NAME, None, "")):
                pending.append(pod)
        pending.sort(key=lambda p: (-int(p["spec"].get("priority") or 0),
                                    p["metadata"].get("creationTimestamp", ""), p["metadata"]["name"]))
        for pod in pending:
            reasons: Counter[str] = Counter()
            feasible = []
            for node in nodes:
                name = node["metadata"]["name"]
                reason = filter_reason(pod, node, load[name], placed)
                if reason is None:
                    feasible.append(node)
                else:
                    reasons[reason] += 1
            if not feasible:
                self._mark_unschedulable(pod, unschedulable_message(len(nodes), reasons))
                continue
            best = min(feasible, key=lambda n: (load[n["metadata"]["name"]], n["metadata"]["name"]))
            if self._bind(pod, best["metadata"]["name"]):
                load[best["metadata"]["name"]] += 1
                placed.append((pod, best))

    def _bind(self, pod: Obj, node_name: str) -> bool:
        meta = pod["metadata"]
        uid = meta.get("uid")

        def assign(p: Obj) -> None:
            if p["metadata"].get("uid") == uid and not p["spec"].get("nodeName"):
                p["spec"]["nodeName"] = node_name

        bound = self.patch(PODS, meta["namespace"], meta["name"], assign)
        if bound is None or bound["spec"].get("nodeName") != node_name:
            return False

        def scheduled(p: Obj) -> None:
            set_condition(p.setdefault("status", {}), "PodScheduled", "True", probe=True)
            p["status"].setdefault("phase", "Pending")

        self.patch(PODS, meta["namespace"], meta["name"], scheduled, status=True)
        return True

    def _mark_unschedulable(self, pod: Obj, message: str) -> None:
        meta = pod["metadata"]

        def change(p: Obj) -> None:
            status = p.setdefault("status", {})
            status.setdefault("phase", "Pending")
            set_condition(status, "PodScheduled", "False", "Unschedulable", message, probe=True)

        self.patch(PODS, meta["namespace"], meta["name"], change, status=True)
