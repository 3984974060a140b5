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
  affinity, as the real controller writes it, and are bound (``spec.nodeName``) directly when the
  scheduler's inter-pod affinity filter would pass on that node: the template's required pod affinity
  (a matching pod on a node of the same topology value; namespaces, namespaceSelector) and pod
  anti-affinity, and the required anti-affinity of the pods already placed. Otherwise the pod is
  created unbound, Pending with ``PodScheduled=False`` (Unschedulable, the scheduler's message), and
  bound once it fits (cilium-envoy waits for the Cilium agent on its node; on a node where no agent
  can run it stays Pending, as on a real cluster). Pods belong to the node they target (``nodeName``,
  else that ``matchFields`` term), for placement, rolling updates and status alike.
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
    condition,
    controller_ref,
    labels_of,
    node_ready,
    node_taints,
    owned_by,
    pod_active,
    pod_available,
    pod_from_template,
    pod_ready,
    scaled_int_or_percent,
    set_condition,
    template_hash,
)
from twin.resources import DAEMONSETS, NAMESPACES, NODES, PODS
from twin.selectors import labels_match, pod_fits_node_affinity, selector_from_dict, tolerates
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


# ---- inter-pod affinity (the scheduler's InterPodAffinity filter, required terms only) --------------

class _Placed:
    """The active pods bound to existing nodes, with their nodes' labels and the namespaces' labels."""

    def __init__(self, pods: list[Obj], nodes: list[Obj], namespaces: list[Obj]) -> None:
        self.node_labels = {n["metadata"]["name"]: labels_of(n) for n in nodes}
        self.namespace_labels = {ns["metadata"]["name"]: labels_of(ns) for ns in namespaces}
        self.pods: list[Obj] = []
        self.anti_terms: list[tuple[Obj, Mapping[str, Any]]] = []  # (bound pod, its required anti-affinity term)
        for pod in pods:
            self.add(pod)

    def add(self, pod: Obj) -> None:
        if (pod.get("spec") or {}).get("nodeName") not in self.node_labels:
            return
        self.pods.append(pod)
        anti = ((pod["spec"].get("affinity") or {}).get("podAntiAffinity") or {})
        for term in anti.get("requiredDuringSchedulingIgnoredDuringExecution") or []:
            self.anti_terms.append((pod, term))

    def _term_covers(self, term: Mapping[str, Any], owner_namespace: str, pod: Obj) -> bool:
        """Whether ``pod`` is among the pods a term of a pod in ``owner_namespace`` selects."""
        namespace = pod["metadata"].get("namespace", "")
        ns_selector = term.get("namespaceSelector")
        listed = term.get("namespaces") or []
        if ns_selector is not None or listed:
            in_scope = namespace in listed or (
                ns_selector is not None
                and labels_match(selector_from_dict(ns_selector), self.namespace_labels.get(namespace, {})))
        else:
            in_scope = namespace == owner_namespace
        return (in_scope and term.get("labelSelector") is not None
                and labels_match(selector_from_dict(term.get("labelSelector")), labels_of(pod)))

    def reason(self, namespace: str, labels: Mapping[str, str], pod_spec: Mapping[str, Any],
               node_name: str) -> str | None:
        """Why a pod (``namespace``, ``labels``, ``pod_spec``) cannot go to ``node_name`` by inter-pod
        affinity, in the scheduler's words; None when it can."""
        here = self.node_labels.get(node_name, {})
        incoming = {"metadata": {"namespace": namespace, "labels": dict(labels)}}
        affinity = pod_spec.get("affinity") or {}

        def same_topology(other: Obj, key: str) -> bool:
            return key in here and self.node_labels[other["spec"]["nodeName"]].get(key) == here[key]

        terms = (affinity.get("podAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution") or []
        if terms:
            # As kube-scheduler: only pods matching all the terms count, the node must carry every
            # term's topology key, and each term's domain there must hold such a pod. The first pod of a
            # group (none matches anywhere, and it matches its own terms) may go to any such node.
            matching = [p for p in self.pods if all(self._term_covers(t, namespace, p) for t in terms)]
            keys = [t.get("topologyKey", "") for t in terms]
            if not all(k in here for k in keys):
                return "node(s) didn't match pod affinity rules"
            if not all(any(same_topology(p, k) for p in matching) for k in keys) and not (
                    not matching and all(self._term_covers(t, namespace, incoming) for t in terms)):
                return "node(s) didn't match pod affinity rules"
        for term in (affinity.get("podAntiAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution") or []:
            key = term.get("topologyKey", "")
            if any(same_topology(p, key) for p in self.pods if self._term_covers(term, namespace, p)):
                return "node(s) didn't match pod anti-affinity rules"
        for other, term in self.anti_terms:
            if (same_topology(other, term.get("topologyKey", ""))
                    and self._term_covers(term, other["metadata"].get("namespace", ""), incoming)):
                return "node(s) didn't satisfy existing pods anti-affinity rules"
        return None


def unschedulable_message(total: int, reason: str) -> str:
    """The scheduler's message for a daemon pod that only its own node could take (the others fail on
    the node-name affinity), and that node not for ``reason``. As kube-scheduler, "count reason" strings
    sorted; anti-affinity failures are ones preemption might resolve, the others are not."""
    reasons = [f"1 {reason}"] + ([f"{total - 1} node(s) didn't match Pod's node affinity/selector"]
                                 if total > 1 else [])
    preemptible = "anti-affinity" in reason
    preemption = (["1 No preemption victims found for incoming pod"] if preemptible else []) + (
        [f"{total - 1 if preemptible else total} Preemption is not helpful for scheduling"]
        if total - (1 if preemptible else 0) > 0 else [])
    return (f"0/{total} nodes are available: {', '.join(sorted(reasons))}. preemption: 0/{total} nodes are "
            f"available: {', '.join(sorted(preemption))}.")


class DaemonSetController(Controller):
    """Keeps one daemon pod per eligible node, rolls out template changes, reports status."""

    name = "daemonsets"
    watches = (DAEMONSETS, NODES, PODS)

    def reconcile(self) -> None:
        nodes = list(self.store.iter_all(NODES))
        pods = [p for p in self.store.iter_all(PODS) if pod_active(p)]
        placed = _Placed(pods, nodes, list(self.store.iter_all(NAMESPACES)))
        for ds in self.store.iter_all(DAEMONSETS):
            if ds["metadata"].get("deletionTimestamp"):
                continue
            mine = [p for p in pods if owned_by(p, ds)]
            self._sync(ds, nodes, mine, placed)

    def _sync(self, ds: Obj, nodes: list[Obj], pods: list[Obj], placed: _Placed) -> None:
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
                    self._create_pod(ds, template, revision, name, placed, len(nodes))
                elif not here[0]["spec"].get("nodeName"):
                    self._try_bind(here[0], name, placed, len(nodes))
                for extra in here[1:]:
                    self.delete(PODS, extra)
            elif not keep:
                for p in here:
                    self.delete(PODS, p)
        strategy = ds["spec"].get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") == "RollingUpdate":
            self._rolling_update(ds, revision, should_run_nodes, by_node)
        self._write_status(ds, revision, nodes)

    def _create_pod(self, ds: Obj, template: Obj, revision: str, node_name: str, placed: _Placed,
                    total_nodes: int) -> None:
        generation = str((ds["metadata"].get("annotations") or {}).get(TEMPLATE_GENERATION_ANNOTATION)
                         or ds["metadata"].get("generation", 1))
        pod = pod_from_template(template, ds, {REVISION_LABEL: revision, GENERATION_LABEL: generation})
        reason = placed.reason(pod["metadata"]["namespace"], pod["metadata"]["labels"], pod["spec"], node_name)
        pod["spec"] = daemon_pod_spec(pod["spec"], node_name, bind=reason is None)
        if reason is None:
            pod["status"]["conditions"] = [{"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                                            "lastTransitionTime": now_iso()}]
        else:
            pod["status"]["phase"] = "Pending"
            pod["status"]["conditions"] = [{"type": "PodScheduled", "status": "False", "lastProbeTime": None,
                                            "lastTransitionTime": now_iso(), "reason": "Unschedulable",
                                            "message": unschedulable_message(total_nodes, reason)}]
        created = self.create_with_suffix(PODS, pod, ds["metadata"]["name"] + "-")
        placed.add(created)

    def _try_bind(self, pod: Obj, node_name: str, placed: _Placed, total_nodes: int) -> None:
        """Bind an unbound daemon pod to its node once inter-pod affinity allows, else say why not."""
        meta = pod["metadata"]
        reason = placed.reason(meta["namespace"], labels_of(pod), pod["spec"], node_name)
        if reason is not None:
            message = unschedulable_message(total_nodes, reason)
            current = condition(pod, "PodScheduled") or {}
            if (current.get("status"), current.get("message")) != ("False", message):
                def unschedulable(p: Obj) -> None:
                    status = p.setdefault("status", {})
                    status.setdefault("phase", "Pending")
                    set_condition(status, "PodScheduled", "False", "Unschedulable", message, probe=True)
                self.patch(PODS, meta["namespace"], meta["name"], unschedulable, status=True)
            return
        uid = meta.get("uid")

        def assign(p: Obj) -> None:
            if p["metadata"].get("uid") == uid and not p["spec"].get("nodeName"):
                p["spec"]["nodeName"] = node_name

        bound = self.patch(PODS, meta["namespace"], meta["name"], assign)
        if bound is None or bound["spec"].get("nodeName") != node_name:
            return
        self.patch(PODS, meta["namespace"], meta["name"],
                   lambda p: set_condition(p.setdefault("status", {}), "PodScheduled", "True", probe=True),
                   status=True)
        placed.add(bound)

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
