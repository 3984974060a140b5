"""PodDisruptionBudget math, shared by the eviction subresource and the disruption controller.

- A PDB matches the pods of its namespace selected by ``spec.selector`` (an empty selector matches
  all of them, a missing one none).
- healthy = matched pods that are Running with condition Ready=True and not being deleted.
- expected = the owning controllers' replicas when known (Deployment / ReplicaSet / StatefulSet /
  DaemonSet),
  plus one for each pod without such an owner; for an integer ``minAvailable`` it is the number of
  matched pods, as in the real disruption controller.
- desired = ``minAvailable`` (int, or percentage of expected rounded up), or expected minus
  ``maxUnavailable`` (int, or percentage rounded up); disruptionsAllowed = max(0, healthy - desired).
"""

from __future__ import annotations

import math
from typing import Any

from twin.resources import DAEMONSETS, DEPLOYMENTS, PDBS, PODS, REPLICASETS, STATEFULSETS
from twin.selectors import labels_match, selector_from_dict
from twin.store import Obj, Store


def pod_is_ready(pod: Obj) -> bool:
    """Running with condition Ready=True."""
    status = pod.get("status") or {}
    if status.get("phase") != "Running":
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def pod_is_healthy(pod: Obj) -> bool:
    """Ready and not being deleted: what a budget counts."""
    return pod_is_ready(pod) and not (pod.get("metadata") or {}).get("deletionTimestamp")


def selects(pdb: Obj, pod: Obj) -> bool:
    """Whether the budget covers the pod (same namespace, selector matches)."""
    if (pdb.get("metadata") or {}).get("namespace") != (pod.get("metadata") or {}).get("namespace"):
        return False
    spec = pdb.get("spec") or {}
    if spec.get("selector") is None:
        return False
    return labels_match(selector_from_dict(spec["selector"]), (pod.get("metadata") or {}).get("labels"))


def budgets_for(store: Store, pod: Obj) -> list[Obj]:
    """The PDBs covering a pod."""
    namespace = (pod.get("metadata") or {}).get("namespace")
    pdbs, _ = store.list(PDBS, namespace)
    return [p for p in pdbs if selects(p, pod)]


def matched_pods(store: Store, pdb: Obj) -> list[Obj]:
    pods, _ = store.list(PODS, (pdb.get("metadata") or {}).get("namespace"))
    return [p for p in pods if selects(pdb, p)]


def _scaled(value: Any, total: int) -> int:
    """An IntOrString: an int, or a percentage of ``total`` rounded up."""
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(int(value[:-1]) * total / 100)
    return int(value)


def _controller_ref(pod: Obj) -> dict[str, Any] | None:
    for ref in (pod.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def expected_count(store: Store, pods: list[Obj]) -> int:
    """Replicas the owning controllers want; pods without a known controller count once each."""
    total, seen = 0, set()
    for pod in pods:
        ref = _controller_ref(pod)
        namespace = pod["metadata"].get("namespace")
        scale = None
        if ref is not None:
            if ref["uid"] in seen:
                continue
            scale = _controller_scale(store, namespace, ref)
        if scale is None:
            total += 1
        else:
            seen.add(ref["uid"] if ref else "")
            total += scale
    return total


def _controller_scale(store: Store, namespace: str | None, ref: dict[str, Any]) -> int | None:
    kind, name = ref.get("kind"), ref.get("name", "")
    if kind == "ReplicaSet":
        rs = store.get(REPLICASETS, namespace, name)
        if rs is None:
            return None
        parent = _controller_ref(rs)
        if parent is not None and parent.get("kind") == "Deployment":
            deployment = store.get(DEPLOYMENTS, namespace, parent.get("name", ""))
            if deployment is not None:
                return int((deployment.get("spec") or {}).get("replicas", 1))
        return int((rs.get("spec") or {}).get("replicas", 1))
    if kind in ("Deployment", "StatefulSet"):
        owner = store.get(DEPLOYMENTS if kind == "Deployment" else STATEFULSETS, namespace, name)
        return None if owner is None else int((owner.get("spec") or {}).get("replicas", 1))
    if kind == "DaemonSet":
        ds = store.get(DAEMONSETS, namespace, name)
        return None if ds is None else int((ds.get("status") or {}).get("desiredNumberScheduled", 0))
    return None


def budget_numbers(store: Store, pdb: Obj, pods: list[Obj] | None = None) -> tuple[int, int, int]:
    """(currentHealthy, desiredHealthy, expectedPods) for a PDB."""
    if pods is None:
        pods = matched_pods(store, pdb)
    spec = pdb.get("spec") or {}
    healthy = sum(1 for p in pods if pod_is_healthy(p))
    min_available, max_unavailable = spec.get("minAvailable"), spec.get("maxUnavailable")
    if max_unavailable is not None:
        expected = expected_count(store, pods)
        desired = max(0, expected - _scaled(max_unavailable, expected))
    elif min_available is not None:
        if isinstance(min_available, int):
            expected, desired = len(pods), min_available
        else:
            expected = expected_count(store, pods)
            desired = _scaled(min_available, expected)
    else:
        expected, desired = len(pods), 0
    return healthy, desired, expected


def disruptions_allowed(store: Store, pdb: Obj) -> int:
    healthy, desired, _ = budget_numbers(store, pdb)
    return max(0, healthy - desired)


def pdb_status(store: Store, pdb: Obj) -> dict[str, Any]:
    """The status the disruption controller writes (conditions without lastTransitionTime)."""
    healthy, desired, expected = budget_numbers(store, pdb)
    allowed = max(0, healthy - desired)
    return {
        "observedGeneration": (pdb.get("metadata") or {}).get("generation", 1),
        "disruptionsAllowed": allowed,
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": expected,
        "conditions": [{
            "type": "DisruptionAllowed",
            "status": "True" if allowed > 0 else "False",
            "reason": "SufficientPods" if allowed > 0 else "InsufficientPods",
            "message": "",
            "observedGeneration": (pdb.get("metadata") or {}).get("generation", 1),
        }],
    }
