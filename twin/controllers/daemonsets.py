"""The DaemonSet controller: one pod per eligible node, rolling updates, and the status rollout reads.

Rules (as kube-controller-manager's DaemonSet controller):
- A node should run the daemon pod when it fits the template's nodeSelector and required node
  affinity and every NoSchedule/NoExecute taint is tolerated by the template's tolerations plus the
  ones the controller adds (not-ready and unreachable for NoExecute; disk-, memory-, pid-pressure and
  unschedulable for NoSchedule; network-unavailable for host-network pods). So daemon pods run on
  cordoned nodes, but on a NotReady node (``not-ready:NoSchedule``) or a node tainted
  ``node.cilium.io/agent-not-ready`` only when the template tolerates it (aws-node and the Cilium agent
  tolerate everything).
- A pod keeps running on a node that stops fitting only through a new NoSchedule taint; a node that no
  longer matches the affinity, gains an untolerated NoExecute taint, or is gone loses its pod.
- New pods carry the node-name ``matchFields`` affinity that replaces the template's required node
  affinity, as the real controller writes it. A pod whose template has required pod affinity or
  anti-affinity is created unbound and left to the scheduler (``twin.controllers.scheduler``), which
  binds it to its node once the inter-pod rules allow or leaves it Pending with a FailedScheduling event
  (cilium-envoy waits for the Cilium agent on its node; where no agent can run it stays Pending, as on a
  real cluster). Other daemon pods are bound directly (``spec.nodeName``): the scheduler would find
  only their node feasible anyway. Pods belong to the node they target (``nodeName``, else that
  ``matchFields`` term), for placement, rolling updates and status alike.
- Pods carry ``controller-revision-hash`` (hash of the template) and ``pod-template-generation``.
- RollingUpdate (maxUnavailable, default 1, percentages of the desired count rounded up): old pods are
  replaced node by node, never leaving more than maxUnavailable nodes without an available pod; old
  pods that are not available are replaced at once. OnDelete: only deleted pods are recreated, new.
- Status: desired/current/ready/available/unavailable/misscheduled/updated counts and observedGeneration.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from twin.controllers.base import (
    NOT_READY_TAINT,
    Controller,
    controller_ref,
    node_ready,
    node_taints,
    owned_by,
    pod_active,
    pod_available,
    pod_from_template,
    pod_ready,
    scaled_int_or_percent,
    template_hash,
)
from twin.resources import DAEMONSETS, NODES, PODS
from twin.selectors import pod_fits_node_affinity, tolerates
from twin.store import Obj, now_iso

REVISION_LABEL = "controller-revision-hash"
GENERATION_LABEL = "pod-template-generation"
TEMPLATE_GENERATION_ANNOTATION = "deprecated.daemonset.template.generation"

DAEMON_TOLERATIONS: tuple[dict[str, str], ...] = (
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
)
HOST_NETWORK_TOLERATION = {"key": "node.kubernetes.io/network-unavailable", "operator": "Exists",
                           "effect": "NoSchedule"}


def daemon_tolerations(pod_spec: dict[str, Any]) -> list[Mapping[str, Any]]:
    """The template's tolerations plus the controller's defaults not already present."""
    result: list[Mapping[str, Any]] = list(pod_spec.get("tolerations") or [])
    extra = list(DAEMON_TOLERATIONS) + ([HOST_NETWORK_TOLERATION] if pod_spec.get("hostNetwork") else [])
    for t in extra:
        if not any(o.get("key") == t["key"] and o.get("effect") == t["effect"] for o in result):
            result.append(dict(t))
    return result


def node_should_run(template_spec: dict[str, Any], node: Obj) -> tuple[bool, bool]:
    """(should run, should continue running) for a daemon pod built from ``template_spec`` on ``node``."""
    if not pod_fits_node_affinity(template_spec, node):
        return False, False
    tolerations = daemon_tolerations(template_spec)
    taints = node_taints(node)
    if not node_ready(node) and not any(t.get("key") == NOT_READY_TAINT for t in taints):
        taints.append({"key": NOT_READY_TAINT, "effect": "NoSchedule"})
    for taint in taints:
        if taint.get("effect") == "NoExecute" and not tolerates(tolerations, taint):
            return False, False
    for taint in taints:
        if taint.get("effect") == "NoSchedule" and not tolerates(tolerations, taint):
            return False, True
    return True, True


def daemon_pod_spec(template_spec: dict[str, Any], node_name: str, *, bind: bool = True) -> dict[str, Any]:
    """The daemon pod's spec for ``node_name``: the node-name affinity, the daemon tolerations, and
    ``nodeName`` when ``bind``."""
    spec = copy.deepcopy(template_spec)
    spec["tolerations"] = daemon_tolerations(template_spec)
    affinity = spec.setdefault("affinity", {})
    node_affinity = affinity.setdefault("nodeAffinity", {})
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node_name]}]}]}
    if bind:
        spec["nodeName"] = node_name
    return spec


def target_node(pod: Obj) -> str:
    """The node a daemon pod is for: its ``nodeName``, else the node its ``matchFields`` term names."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return str(spec["nodeName"])
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    for term in required.get("nodeSelectorTerms") or []:
        for field in term.get("matchFields") or []:
            if field.get("key") == "metadata.name" and field.get("operator") == "In" and field.get("values"):
                return str(field["values"][0])
    return ""


def has_inter_pod_terms(template_spec: Mapping[str, Any]) -> bool:
    """Whether the pod spec has required pod affinity or anti-affinity (the scheduler decides those)."""
    affinity = template_spec.get("affinity") or {}
    return any((affinity.get(kind) or {}).get("requiredDuringSchedulingIgnoredDuringExecution")
               for kind in ("podAffinity", "podAntiAffinity"))


class DaemonSetController(Controller):
    """Keeps one daemon pod per eligible node, rolls out template changes, reports status."""

    name = "daemonsets"
    watches = (DAEMONSETS, NODES, PODS)

    def reconcile(self) -> None:
        nodes = list(self.store.iter_all(NODES))
        pods = [p for p in self.store.iter_all(PODS) if pod_active(p)]
        for ds in self.store.iter_all(DAEMONSETS):
            if ds["metadata"].get("deletionTimestamp"):
                continue
            mine = [p for p in pods if owned_by(p, ds)]
            self._sync(ds, nodes, mine)

    def _sync(self, ds: Obj, nodes: list[Obj], pods: list[Obj]) -> None:
        template = ds["spec"].get("template") or {}
        template_spec = template.get("spec") or {}
        revision = template_hash(template)
        by_node: dict[str, list[Obj]] = {}
        for p in sorted(pods, key=lambda p: (p["metadata"].get("creationTimestamp", ""), p["metadata"]["name"])):
            by_node.setdefault(target_node(p), []).append(p)
        node_names = {n["metadata"]["name"] for n in nodes}
        for name, stray in by_node.items():
            if name not in node_names:
                for p in stray:
                    self.delete(PODS, p)
        should_run_nodes: list[str] = []
        for node in nodes:
            name = node["metadata"]["name"]
            run, keep = node_should_run(template_spec, node)
            here = by_node.get(name, [])
            if run:
                should_run_nodes.append(name)
                if not here:
                    self._create_pod(ds, template, revision, name)
                for extra in here[1:]:
                    self.delete(PODS, extra)
            elif not keep:
                for p in here:
                    self.delete(PODS, p)
        strategy = ds["spec"].get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") == "RollingUpdate":
            self._rolling_update(ds, revision, should_run_nodes, by_node)
        self._write_status(ds, revision, nodes)

    def _create_pod(self, ds: Obj, template: Obj, revision: str, node_name: str) -> None:
        generation = str((ds["metadata"].get("annotations") or {}).get(TEMPLATE_GENERATION_ANNOTATION)
                         or ds["metadata"].get("generation", 1))
        pod = pod_from_template(template, ds, {REVISION_LABEL: revision, GENERATION_LABEL: generation})
        bind = not has_inter_pod_terms(pod["spec"])
        pod["spec"] = daemon_pod_spec(pod["spec"], node_name, bind=bind)
        if bind:
            pod["status"]["conditions"] = [{"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                                            "lastTransitionTime": now_iso()}]
        else:
            pod["status"]["phase"] = "Pending"
        self.create_with_suffix(PODS, pod, ds["metadata"]["name"] + "-")

    def _rolling_update(self, ds: Obj, revision: str, should_run: list[str],
                        by_node: dict[str, list[Obj]]) -> None:
        """maxSurge 0: replace old pods while at most maxUnavailable nodes lack an available pod."""
        min_ready = int(ds["spec"].get("minReadySeconds") or 0)
        rolling = (ds["spec"].get("updateStrategy") or {}).get("rollingUpdate") or {}
        max_unavailable = scaled_int_or_percent(rolling.get("maxUnavailable", 1), len(should_run),
                                                round_up=True) or 1
        unavailable = 0
        replace_now: list[Obj] = []
        candidates: list[Obj] = []
        for name in should_run:
            here = by_node.get(name, [])
            if len(here) != 1:
                unavailable += 1  # being created, or duplicates being cleaned up
                continue
            pod = here[0]
            if pod["metadata"].get("labels", {}).get(REVISION_LABEL) == revision:
                if not pod_available(pod, min_ready):
                    unavailable += 1
            elif not pod_available(pod, min_ready):
                replace_now.append(pod)
            elif unavailable < max_unavailable:
                candidates.append(pod)
        budget = max(0, max_unavailable - unavailable)
        for pod in replace_now + candidates[:budget]:
            self.delete(PODS, pod)

    def _write_status(self, ds: Obj, revision: str, nodes: list[Obj]) -> None:
        template_spec = (ds["spec"].get("template") or {}).get("spec") or {}
        min_ready = int(ds["spec"].get("minReadySeconds") or 0)
        desired = current = ready = available = updated = misscheduled = 0
        by_node: dict[str, list[Obj]] = {}
        for p in self.store.list(PODS, ds["metadata"].get("namespace"))[0]:
            if pod_active(p) and owned_by(p, ds):
                by_node.setdefault(target_node(p), []).append(p)
        for node in nodes:
            name = node["metadata"]["name"]
            here = by_node.get(name, [])
            run, _ = node_should_run(template_spec, node)
            if run:
                desired += 1
            if not here:
                continue
            if not run:
                misscheduled += 1
                continue
            current += 1
            pod = min(here, key=lambda p: (p["metadata"].get("creationTimestamp", ""), p["metadata"]["name"]))
            if pod_ready(pod):
                ready += 1
            if pod_available(pod, min_ready):
                available += 1
            if pod["metadata"].get("labels", {}).get(REVISION_LABEL) == revision:
                updated += 1
        status = {"currentNumberScheduled": current, "desiredNumberScheduled": desired,
                  "numberMisscheduled": misscheduled, "numberReady": ready,
                  "observedGeneration": ds["metadata"].get("generation", 1),
                  "updatedNumberScheduled": updated, "numberAvailable": available}
        if desired - available > 0:
            status["numberUnavailable"] = desired - available

        def change(obj: Obj) -> None:
            old = obj.get("status") or {}
            obj["status"] = {**{k: v for k, v in old.items() if k in ("collisionCount", "conditions")},
                             **status}

        self.patch(DAEMONSETS, ds["metadata"]["namespace"], ds["metadata"]["name"], change, status=True)


def is_daemon_pod(pod: Obj) -> bool:
    ref = controller_ref(pod)
    return ref is not None and ref.get("kind") == "DaemonSet"
