"""One readiness rule per thing, on parsed objects (plain dicts as the API server sends them).

Sensors, triggers, rollback and preflight all use these rules, so "Ready" means the same everywhere.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

Obj = Mapping[str, Any]

NODEGROUP_LABEL = "eks.amazonaws.com/nodegroup"
CNI_LABEL = "cni"
AWS_CNI = "aws-cni"
CILIUM = "cilium"
AGENT_NOT_READY_TAINT = "node.cilium.io/agent-not-ready"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


def _meta(obj: Obj) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def name_of(obj: Obj) -> str:
    return str(_meta(obj).get("name", ""))


def labels_of(obj: Obj) -> Mapping[str, str]:
    return _meta(obj).get("labels") or {}


def condition(obj: Obj, kind: str) -> Mapping[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return None


# ---- nodes ---------------------------------------------------------------------------------

def node_ready(node: Obj) -> bool:
    """The node's ``Ready`` condition is True."""
    cond = condition(node, "Ready")
    return bool(cond and cond.get("status") == "True")


def node_taints(node: Obj) -> list[Mapping[str, Any]]:
    return list((node.get("spec") or {}).get("taints") or [])


def has_taint(node: Obj, key: str) -> bool:
    return any(t.get("key") == key for t in node_taints(node))


def node_cordoned(node: Obj) -> bool:
    return bool((node.get("spec") or {}).get("unschedulable"))


def node_nodegroup(node: Obj) -> str | None:
    return labels_of(node).get(NODEGROUP_LABEL)


def node_cni(node: Obj | None) -> str:
    """The CNI serving a node: ``aws-cni`` when labelled ``cni=aws-cni``, else Cilium."""
    return AWS_CNI if node is not None and labels_of(node).get(CNI_LABEL) == AWS_CNI else CILIUM


def cilium_node_ready(node: Obj) -> bool:
    """A Cilium node is ready when Ready and the operator has removed the agent-not-ready taint."""
    return node_ready(node) and not has_taint(node, AGENT_NOT_READY_TAINT)


def node_summary(node: Obj) -> str:
    parts = ["Ready" if node_ready(node) else "NotReady"]
    if node_cordoned(node):
        parts.append("SchedulingDisabled")
    if has_taint(node, AGENT_NOT_READY_TAINT):
        parts.append("agent-not-ready")
    return f"{name_of(node)} ({node_nodegroup(node) or '?'}, {node_cni(node)}): {', '.join(parts)}"


# ---- pods ----------------------------------------------------------------------------------

def pod_running(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running"


def pod_ready(pod: Obj) -> bool:
    """Running, Ready condition True, and not being deleted."""
    cond = condition(pod, "Ready")
    return (pod_running(pod) and bool(cond and cond.get("status") == "True")
            and not _meta(pod).get("deletionTimestamp"))


def pod_terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def pod_node(pod: Obj) -> str | None:
    return (pod.get("spec") or {}).get("nodeName")


def controller_of(obj: Obj) -> Mapping[str, Any] | None:
    """The ownerReference with ``controller: true``, if any."""
    for ref in _meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


POD_TEMPLATE_HASH = "pod-template-hash"


def workload_of(pod: Obj) -> tuple[str, ...] | None:
    """What a pod and its replacement share, as (namespace, kind, name[, pod name]); None without a
    controller. A ReplicaSet's pod counts as its Deployment's (the ReplicaSet is named
    ``<deployment>-<pod-template-hash>``), so a replacement from a newer ReplicaSet counts too; a
    StatefulSet's pod also keeps its own name (its replacement is the same ordinal with a new UID)."""
    ref = controller_of(pod)
    if ref is None:
        return None
    namespace = str(_meta(pod).get("namespace", "default"))
    kind, name = str(ref.get("kind")), str(ref.get("name"))
    template_hash = labels_of(pod).get(POD_TEMPLATE_HASH)
    if kind == "ReplicaSet" and template_hash and name.endswith(f"-{template_hash}"):
        return namespace, "Deployment", name.removesuffix(f"-{template_hash}")
    if kind == "StatefulSet":
        return namespace, kind, name, name_of(pod)
    return namespace, kind, name


def uid_of(obj: Obj) -> str:
    return str(_meta(obj).get("uid", ""))


def is_replacement(pod: Obj, *, seen_uids: Collection[str], nodes: Mapping[str, Obj], cni: str) -> bool:
    """A pod that can stand in for an evicted one: a UID not seen before the eviction, Ready, on a known
    node served by ``cni`` (see ``node_cni``)."""
    node = nodes.get(pod_node(pod) or "")
    return uid_of(pod) not in seen_uids and pod_ready(pod) and node is not None and node_cni(node) == cni


def is_daemonset_pod(pod: Obj) -> bool:
    ref = controller_of(pod)
    return bool(ref and ref.get("kind") == "DaemonSet")


def is_mirror_pod(pod: Obj) -> bool:
    return MIRROR_ANNOTATION in (_meta(pod).get("annotations") or {})


UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"


def tolerates_cordon(pod: Obj) -> bool:
    """The pod tolerates ``node.kubernetes.io/unschedulable`` (e.g. ``operator: Exists`` with no key, as
    cilium-operator has): the scheduler may put its replacement right back on a cordoned node."""
    for tol in (pod.get("spec") or {}).get("tolerations") or []:
        key, op = tol.get("key"), tol.get("operator", "Equal")
        if tol.get("effect") not in (None, "", "NoSchedule"):
            continue
        if (not key and op == "Exists") or key == UNSCHEDULABLE_TAINT:
            return True
    return False


CILIUM_PART_OF = ("app.kubernetes.io/part-of", "cilium")


def is_cilium_pod(pod: Obj) -> bool:
    """One of Cilium's own pods (agent, envoy, operator, Hubble Relay): every one carries the label."""
    key, value = CILIUM_PART_OF
    return labels_of(pod).get(key) == value


def is_workload_pod(pod: Obj) -> bool:
    """A pod cutover must move: not DaemonSet-managed, not a mirror (static) pod, not finished, not one
    of Cilium's own (fenced off aws-cni nodes, they go with Cilium at rollback), and not one that
    tolerates cordoned nodes (evicting it is futile: it may come straight back; such pods are cluster
    add-ons that go with their nodes at decommission, or with Cilium at rollback)."""
    return not (is_daemonset_pod(pod) or is_mirror_pod(pod) or pod_terminal(pod) or is_cilium_pod(pod)
                or tolerates_cordon(pod))


def workload_pods_on(pods: Iterable[Obj], node_names: Iterable[str]) -> list[Obj]:
    """Workload pods bound to any of these nodes, sorted by namespace/name."""
    names = set(node_names)
    found = [p for p in pods if pod_node(p) in names and is_workload_pod(p)]
    return sorted(found, key=lambda p: (_meta(p).get("namespace", ""), name_of(p)))


# ---- workloads -----------------------------------------------------------------------------

def daemonset_rolled_out(ds: Obj) -> bool:
    """The controller saw the latest spec, every scheduled pod is updated and available."""
    status = ds.get("status") or {}
    desired = status.get("desiredNumberScheduled", 0)
    return (status.get("observedGeneration", 0) >= _meta(ds).get("generation", 0)
            and status.get("updatedNumberScheduled", 0) == desired
            and status.get("numberAvailable", 0) == desired)


TEMPLATE_GENERATION_LABEL = "pod-template-generation"
TEMPLATE_GENERATION_ANNOTATION = "deprecated.daemonset.template.generation"


def daemonset_template_generation(ds: Obj) -> str:
    """The generation of a DaemonSet's pod template (what its pods' ``pod-template-generation`` says)."""
    meta = _meta(ds)
    return str((meta.get("annotations") or {}).get(TEMPLATE_GENERATION_ANNOTATION) or meta.get("generation") or "")


def runs_current_template(pod: Obj, ds: Obj) -> bool:
    """A DaemonSet pod created from the DaemonSet's current pod template."""
    return labels_of(pod).get(TEMPLATE_GENERATION_LABEL) == daemonset_template_generation(ds)


def deployment_rolled_out(dep: Obj) -> bool:
    """observedGeneration caught up, every replica updated, ready and available (kubectl's rule)."""
    status = dep.get("status") or {}
    replicas = (dep.get("spec") or {}).get("replicas", 1)
    return (status.get("observedGeneration", 0) >= _meta(dep).get("generation", 0)
            and status.get("updatedReplicas", 0) == replicas
            and status.get("readyReplicas", 0) == replicas
            and status.get("availableReplicas", 0) == replicas
            and status.get("replicas", 0) == replicas)


# ---- EKS node groups -----------------------------------------------------------------------

NODEGROUP_FAILED_STATES = frozenset({"CREATE_FAILED", "DELETE_FAILED", "DEGRADED"})


def nodegroup_at_size(nodegroup: Obj, size: int) -> bool:
    """ACTIVE with the desired size set (EKS reports the target, our node sensors count the nodes)."""
    scaling = nodegroup.get("scalingConfig") or {}
    return nodegroup.get("status") == "ACTIVE" and scaling.get("desiredSize") == size


def nodegroup_taints(nodegroup: Obj) -> list[Mapping[str, Any]]:
    return list(nodegroup.get("taints") or [])
