"""Rollout restarts that move every pod onto Cilium when it runs beside the AWS VPC CNI (in place).

Rules:
- The plan: every Deployment, StatefulSet and DaemonSet with at least one pod on the old CNI
  (``old_cni``; with ``onto="aws-cni"``, the rollback's, one on Cilium), namespace by namespace: those
  of ``namespace_order`` first, in that order (``kube-system`` by default: CoreDNS and the other
  add-ons), then every other alphabetically; inside a namespace DaemonSets, then Deployments, then
  StatefulSets, each by name.
- Never planned: the CNI agents (``kube-system/aws-node``, Cilium's agent ``k8s-app=cilium`` and
  ``cilium-envoy``: restarting them is no move, they are host-network) and workloads whose pod template
  is host-network (cilium-operator's is). Cilium's other components (hubble-relay, hubble-ui) are
  planned like any workload, and so only when a pod of theirs is on the old CNI: aws-cni wires one
  created during the install before Cilium's agent is Ready on its node (the twin shows it for
  hubble-relay in about half of the installs), and the gate before aws-node goes could never pass.
  Onto aws-cni (rollback) they are never planned: they go with Cilium's uninstall.
- Pods to move that no planned restart moves (an excluded workload's, another controller's: a
  Job, a ReplicaSet of no Deployment...) and bare pods are returned apart, for a human: nothing here
  ever deletes a pod.
- A restart is ``kubectl rollout restart``: ``kubectl.kubernetes.io/restartedAt`` in the pod template's
  annotations. It is idempotent: a workload with no pod left to move is not restarted, and one
  whose template already carries this run's value is not patched again (a retry restarts nothing twice).
- Done is what ``kubectl rollout status`` says for the kind (``rollout_done``).
- A rollout restart does not go through the Eviction API, so PodDisruptionBudgets do not hold it back:
  a workload whose pods a budget with no disruption allowed selects must wait (``blocked_by_budget``).
- Requests: the plan lists pods, CiliumEndpoints and the three workload kinds once each, all
  namespaces; a budget check lists the workload's namespace's budgets once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cilium_migration import old_cni
from cilium_migration.audit import Change, object_change
from cilium_migration.clients import items, read_json, read_or_none
from cilium_migration.readiness import (
    AWS_CNI,
    CILIUM,
    RESTARTED_AT,
    controller_of,
    labels_of,
    name_of,
    workload_of,
)

Obj = dict[str, Any]

DEFAULT_NAMESPACE_ORDER: tuple[str, ...] = ("kube-system",)
KIND_ORDER = {"DaemonSet": 0, "Deployment": 1, "StatefulSet": 2}
# kind -> the AppsV1Api suffix of its methods (read_namespaced_<x>, patch_namespaced_<x>, list_<x>_for_all_namespaces)
API_NAMES = {"Deployment": "deployment", "StatefulSet": "stateful_set", "DaemonSet": "daemon_set"}

CNI_AGENTS = frozenset({("kube-system", "aws-node")})
CNI_AGENT_APPS = frozenset({"aws-node", "cilium", "cilium-envoy"})  # their ``k8s-app`` label, any namespace
CILIUM_APPS = frozenset({"cilium", "cilium-envoy", "hubble-relay", "hubble-ui"})

# ---- workloads ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Workload:
    """A workload to restart: its kind, namespace and name, the labels its pods carry (what a budget's
    selector matches: the template's, and those of its pods to move) and the names of its pods to move
    (``old_cni_pods``: on the old CNI; for a restart onto aws-cni, on Cilium)."""

    kind: str
    namespace: str
    name: str
    template_labels: Mapping[str, str] = field(default_factory=dict)
    pod_labels: tuple[Mapping[str, str], ...] = ()
    old_cni_pods: tuple[str, ...] = ()

    @property
    def target(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable (an XCom)."""
        return {"kind": self.kind, "namespace": self.namespace, "name": self.name,
                "template_labels": dict(self.template_labels), "pod_labels": [dict(x) for x in self.pod_labels],
                "old_cni_pods": list(self.old_cni_pods)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Workload:
        return cls(str(data["kind"]), str(data["namespace"]), str(data["name"]),
                   dict(data.get("template_labels") or {}),
                   tuple(dict(x) for x in data.get("pod_labels") or []), tuple(data.get("old_cni_pods") or []))


def template_of(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return (obj.get("spec") or {}).get("template") or {}


def template_labels(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((template_of(obj).get("metadata") or {}).get("labels") or {})


def restarted_at_of(obj: Mapping[str, Any]) -> str | None:
    """The template's ``kubectl.kubernetes.io/restartedAt``, if any."""
    value = ((template_of(obj).get("metadata") or {}).get("annotations") or {}).get(RESTARTED_AT)
    return None if value is None else str(value)


def is_cilium_component(labels: Mapping[str, str]) -> bool:
    return labels.get("app.kubernetes.io/part-of") == "cilium" or labels.get("k8s-app") in CILIUM_APPS \
        or labels.get("io.cilium/app") == "operator"


def excluded(obj: Mapping[str, Any], onto: str = CILIUM) -> str | None:
    """Why this workload is never restarted onto ``onto`` (see the module's rules); None when it may be."""
    labels = {**dict(labels_of(obj)), **template_labels(obj)}
    if (old_cni.namespace_of(obj), name_of(obj)) in CNI_AGENTS or labels.get("k8s-app") in CNI_AGENT_APPS:
        return "a CNI agent"
    if onto == AWS_CNI and is_cilium_component(labels):
        return "one of Cilium's components: it goes with Cilium"
    if (template_of(obj).get("spec") or {}).get("hostNetwork"):
        return "its pods are host-network"
    return None

# ---- the plan ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    """The workloads to restart, in order, and the pods on the old CNI that no planned restart moves:
    ``bare_pods`` (no controller) and ``other_pods`` (another controller, or an excluded workload), each
    for a human to recreate."""

    workloads: list[Workload]
    bare_pods: list[Obj] = field(default_factory=list)
    other_pods: list[Obj] = field(default_factory=list)


def namespace_rank(namespace: str, order: Sequence[str]) -> tuple[int, str]:
    """Named namespaces first, in ``order``; then every other one alphabetically."""
    return (list(order).index(namespace), "") if namespace in order else (len(order), namespace)


def sort_key(workload: Workload, order: Sequence[str]) -> tuple[Any, ...]:
    return (*namespace_rank(workload.namespace, order), KIND_ORDER.get(workload.kind, len(KIND_ORDER)),
            workload.name)


def _key(kind: str, obj: Mapping[str, Any]) -> tuple[str, str, str]:
    return old_cni.namespace_of(obj), kind, name_of(obj)


def plan_restarts(pods: Iterable[Mapping[str, Any]], endpoints: Iterable[Mapping[str, Any]],
                  workloads: Mapping[str, Iterable[Mapping[str, Any]]],
                  namespace_order: Sequence[str] = DEFAULT_NAMESPACE_ORDER, *, onto: str = CILIUM) -> Plan:
    """The plan from every pod, CiliumEndpoint and workload (``workloads``: kind -> objects), no API calls:
    the workloads with pods not yet on ``onto``."""
    objects = {_key(kind, obj): obj for kind, objs in workloads.items() for obj in objs}
    on_old: dict[tuple[str, str, str], list[Obj]] = {}
    bare: list[Obj] = []
    others: list[Obj] = []
    for pod in old_cni.pods_to_move(pods, endpoints, onto):
        owner = workload_of(pod)
        if owner is None:
            (bare if controller_of(pod) is None else others).append(pod)
            continue
        key = (owner[0], owner[1], owner[2])
        obj = objects.get(key)
        if obj is None or excluded(obj, onto) is not None:
            others.append(pod)
        else:
            on_old.setdefault(key, []).append(pod)
    planned = [Workload(kind, namespace, name, template_labels(objects[(namespace, kind, name)]),
                        tuple(dict(labels_of(p)) for p in pods_), tuple(name_of(p) for p in pods_))
               for (namespace, kind, name), pods_ in on_old.items()]
    return Plan(sorted(planned, key=lambda w: sort_key(w, namespace_order)), bare, others)


def list_workloads(apps: Any) -> dict[str, list[Obj]]:
    """Every Deployment, StatefulSet and DaemonSet, all namespaces (one paginated list per kind)."""
    return {kind: items(getattr(apps, f"list_{api}_for_all_namespaces")) for kind, api in API_NAMES.items()}


def restart_plan(apps: Any, core: Any, custom: Any, namespace_order: Sequence[str] = DEFAULT_NAMESPACE_ORDER,
                 *, onto: str = CILIUM) -> Plan:
    """``plan_restarts`` against the cluster now (``custom``: a ``CustomObjectsApi``)."""
    pods = items(core.list_pod_for_all_namespaces)
    endpoints = old_cni.list_endpoints(custom)
    return plan_restarts(pods, endpoints, list_workloads(apps), namespace_order, onto=onto)


# ---- restarting --------------------------------------------------------------------------------

def _method(apps: Any, verb: str, kind: str) -> Any:
    return getattr(apps, f"{verb}_namespaced_{API_NAMES[kind]}")


def read(apps: Any, workload: Workload) -> Obj | None:
    """The workload as it is now; None when it is gone."""
    return read_or_none(_method(apps, "read", workload.kind), workload.name, workload.namespace)


def restart(apps: Any, workload: Workload, *, restarted_at: str, dry_run: bool = False) -> Change | None:
    """``kubectl rollout restart`` with ``restarted_at`` (a value of this run: a retry finds it set); None
    when there is nothing to do: no pod to move, the workload gone, or this value already set."""
    if not workload.old_cni_pods:
        return None
    before = read(apps, workload)
    if before is None or restarted_at_of(before) == restarted_at:
        return None
    body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: restarted_at}}}}}
    after = read_json(_method(apps, "patch", workload.kind), workload.name, workload.namespace, body,
                      dry_run="All" if dry_run else None)
    return object_change(workload.kind, workload.name, workload.namespace, before, after, dry_run=dry_run)


def _int(mapping: Mapping[str, Any], key: str, default: int = 0) -> int:
    value = mapping.get(key)
    return default if value is None else int(value)


def rolls_on_restart(obj: Mapping[str, Any]) -> bool:
    """A restart replaces the pods: a Deployment, or a StatefulSet or DaemonSet updating RollingUpdate (not
    OnDelete)."""
    return ((obj.get("spec") or {}).get("updateStrategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"


def rollout_done(obj: Mapping[str, Any], kind: str | None = None) -> tuple[bool, str]:
    """Whether the rollout is complete, and ``kubectl rollout status``'s message (``kind`` when the object
    carries none, as list items do)."""
    kind = str(obj.get("kind") or kind or "")
    name, spec, status = name_of(obj), obj.get("spec") or {}, obj.get("status") or {}
    observed = _int(status, "observedGeneration") >= _int(dict(obj.get("metadata") or {}), "generation")
    if kind == "Deployment":
        if not observed:
            return False, f'Waiting for deployment "{name}" spec update to be observed...'
        progressing: Mapping[str, Any] = next(
            (c for c in status.get("conditions") or [] if c.get("type") == "Progressing"), {})
        if progressing.get("reason") == "ProgressDeadlineExceeded":
            return False, f'deployment "{name}" exceeded its progress deadline'
        replicas, updated = _int(spec, "replicas", 1), _int(status, "updatedReplicas")
        if updated < replicas:
            return False, (f'Waiting for deployment "{name}" rollout to finish: {updated} out of {replicas} '
                           "new replicas have been updated...")
        if _int(status, "replicas") > updated:
            return False, (f'Waiting for deployment "{name}" rollout to finish: {_int(status, "replicas") - updated} '
                           "old replicas are pending termination...")
        if _int(status, "availableReplicas") < updated:
            return False, (f'Waiting for deployment "{name}" rollout to finish: {_int(status, "availableReplicas")} '
                           f"of {updated} updated replicas are available...")
        return True, f'deployment "{name}" successfully rolled out'
    if kind == "StatefulSet":
        if not rolls_on_restart(obj):
            return False, f'statefulset "{name}": rollout status is only available for RollingUpdate (OnDelete)'
        if _int(status, "observedGeneration") == 0 or not observed:
            return False, "Waiting for statefulset spec update to be observed..."
        replicas = _int(spec, "replicas", 1)
        if _int(status, "readyReplicas") < replicas:
            return False, f"Waiting for {replicas - _int(status, 'readyReplicas')} pods to be ready..."
        if status.get("updateRevision") != status.get("currentRevision") or \
                _int(status, "updatedReplicas") < replicas:
            return False, (f"waiting for statefulset rolling update to complete {_int(status, 'updatedReplicas')} "
                           f"pods at revision {status.get('updateRevision')}...")
        return True, (f"statefulset rolling update complete {replicas} pods at revision "
                      f"{status.get('currentRevision')}...")
    if kind == "DaemonSet":
        if not rolls_on_restart(obj):
            return False, f'daemon set "{name}": rollout status is only available for RollingUpdate (OnDelete)'
        if not observed:
            return False, "Waiting for daemon set spec update to be observed..."
        desired, updated = _int(status, "desiredNumberScheduled"), _int(status, "updatedNumberScheduled")
        if updated < desired:
            return False, (f'Waiting for daemon set "{name}" rollout to finish: {updated} out of {desired} new '
                           "pods have been updated...")
        if _int(status, "numberAvailable") < desired:
            return False, (f'Waiting for daemon set "{name}" rollout to finish: {_int(status, "numberAvailable")} '
                           f"of {desired} updated pods are available...")
        return True, f'daemon set "{name}" successfully rolled out'
    raise ValueError(f"no rollout status for kind {kind!r}")


# ---- disruption budgets ------------------------------------------------------------------------

def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A ``metav1.LabelSelector`` as a PodDisruptionBudget reads it: null selects nothing, ``{}``
    everything; ``matchLabels`` and every ``matchExpressions`` (In, NotIn, Exists, DoesNotExist) must hold."""
    if selector is None:
        return False
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), set(expr.get("values") or [])
        present = key in labels
        ok = {"In": present and labels.get(key) in values, "NotIn": not present or labels.get(key) not in values,
              "Exists": present, "DoesNotExist": not present}.get(str(op), False)
        if not ok:
            return False
    return True


def selects(pdb: Mapping[str, Any], workload: Workload) -> bool:
    """The budget (of the same namespace) selects the workload's pods: its template's labels or any of
    its listed pods'."""
    if old_cni.namespace_of(pdb) != workload.namespace:
        return False
    selector = (pdb.get("spec") or {}).get("selector")
    return any(selector_matches(selector, labels) for labels in (workload.template_labels, *workload.pod_labels))


def budget_blocks(pdbs: Iterable[Mapping[str, Any]], workload: Workload) -> str | None:
    """Why the restart must wait: each budget selecting the workload with no disruption allowed now (a
    budget whose status is not computed yet counts as none allowed); None when none holds it back."""
    reasons = []
    for pdb in pdbs:
        if not selects(pdb, workload):
            continue
        status = pdb.get("status") or {}
        if _int(status, "disruptionsAllowed") > 0:
            continue
        reasons.append(f"PodDisruptionBudget {old_cni.namespace_of(pdb)}/{name_of(pdb)} allows no disruption "
                       f"now ({_int(status, 'currentHealthy')} healthy, {_int(status, 'desiredHealthy')} "
                       "required)")
    if not reasons:
        return None
    return (f"{workload.target} waits: {'; '.join(reasons)} (a rollout restart does not go through the "
            "Eviction API, so it is held back here)")


def blocked_by_budget(policy: Any, workload: Workload) -> str | None:
    """``budget_blocks`` against the budgets of the workload's namespace now (``PolicyV1Api``; one list)."""
    return budget_blocks(items(policy.list_namespaced_pod_disruption_budget, workload.namespace), workload)
