"""Workload pods: find those on given nodes and move them with the Eviction API, in batches.

Evictions respect PodDisruptionBudgets: a 429 is retried with backoff until the batch timeout and only
then, and only with ``force``, is the pod deleted. DaemonSet pods and mirror pods are never moved;
pods without a controller are refused unless forced (as ``kubectl drain`` does).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from cilium_migration.audit import Change
from cilium_migration.clients import items
from cilium_migration.errors import PermanentError, TemporaryError, api_status, is_not_found
from cilium_migration.readiness import controller_of, name_of, pod_ready, workload_pods_on

Obj = dict[str, Any]


def pods_on_nodes(core: Any, node_names: Iterable[str]) -> list[Obj]:
    """Every pod bound to these nodes, all namespaces (one ``spec.nodeName`` field selector per node)."""
    found: list[Obj] = []
    for node in sorted(set(node_names)):
        found += items(core.list_pod_for_all_namespaces, field_selector=f"spec.nodeName={node}")
    return found


def workloads_on_nodes(core: Any, node_names: Iterable[str]) -> list[Obj]:
    names = list(node_names)
    return [dict(p) for p in workload_pods_on(pods_on_nodes(core, names), names)]


def _ns(pod: Obj) -> str:
    return str((pod.get("metadata") or {}).get("namespace", "default"))


def evict(core: Any, pod: Obj, *, deadline: float, force: bool = False, dry_run: bool = False,
          sleep: Callable[[float], None] = time.sleep, log: Any = None) -> Change | None:
    """Evict one pod, retrying 429 (a PDB forbids it now) with backoff until ``deadline``.

    Returns None when the pod is already gone. Past the deadline: delete it when ``force``, else
    ``TemporaryError`` (the task's retry tries again later; nothing is ever forced by default).
    """
    name, ns = name_of(pod), _ns(pod)
    body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": ns}}
    delay = 0.2
    while True:
        try:
            core.create_namespaced_pod_eviction(name, ns, body, dry_run="All" if dry_run else None, _preload_content=False)
            return Change("evict", "Pod", name, ns, before={"node": (pod.get("spec") or {}).get("nodeName")},
                          after={"evicted": True}, dry_run=dry_run)
        except Exception as exc:
            if is_not_found(exc):
                return None
            status = api_status(exc)
            if status not in (429, 500, 503):
                raise
            if time.monotonic() >= deadline:
                if force and status == 429:
                    core.delete_namespaced_pod(name, ns, dry_run="All" if dry_run else None, _preload_content=False)
                    return Change("delete (forced)", "Pod", name, ns,
                                  before={"node": (pod.get("spec") or {}).get("nodeName")},
                                  after={"deleted": True}, dry_run=dry_run)
                raise TemporaryError(f"eviction of {ns}/{name} still refused ({status}) at the timeout: a "
                                     "PodDisruptionBudget forbids it; fix the budget or set force_evictions") from exc
            if log is not None:
                log.info("eviction of %s/%s refused (%s), retrying in %.1fs", ns, name, status, delay)
            sleep(delay)
            delay = min(delay * 2, 5.0)


def _owner_key(pod: Obj) -> tuple[str, str] | None:
    ref = controller_of(pod)
    return (_ns(pod), str(ref.get("uid"))) if ref else None


def replacements_ready(core: Any, evicted: list[Obj], ready_before: dict[tuple[str, str], int]) -> bool:
    """Evicted pods are gone and each affected controller has as many Ready pods as before the batch."""
    gone = {(_ns(p), name_of(p)) for p in evicted}
    for ns in sorted({_ns(p) for p in evicted}):
        pods = items(core.list_namespaced_pod, ns)
        if any((_ns(p), name_of(p)) in gone for p in pods):
            return False
        for (owner_ns, uid), needed in ready_before.items():
            if owner_ns != ns:
                continue
            ready = sum(1 for p in pods if _owner_key(p) == (ns, uid) and pod_ready(p))
            if ready < needed:
                return False
    return True


def move(core: Any, node_names: Iterable[str], *, batch_size: int, batch_timeout: float, force: bool = False,
         dry_run: bool = False, poll: float = 1.0, sleep: Callable[[float], None] = time.sleep,
         log: Any = None) -> list[Change]:
    """Evict workload pods off these nodes, ``batch_size`` at a time, each batch's replacements Ready
    before the next. Callers cordon the nodes first. Re-running finds only the pods still there."""
    names = list(node_names)
    pods = workloads_on_nodes(core, names)
    bare = [p for p in pods if controller_of(p) is None]
    if bare and not force:
        listed = ", ".join(f"{_ns(p)}/{name_of(p)}" for p in bare)
        raise PermanentError(f"pods without a controller would be lost by eviction: {listed}; move them by "
                             "hand or set force_evictions")
    changes: list[Change] = []
    for start in range(0, len(pods), batch_size):
        batch = pods[start:start + batch_size]
        deadline = time.monotonic() + batch_timeout
        owners = {k for p in batch if (k := _owner_key(p)) is not None}
        ready_before: dict[tuple[str, str], int] = {}
        for ns in sorted({o[0] for o in owners}):
            for p in items(core.list_namespaced_pod, ns):
                key = _owner_key(p)
                if key in owners and pod_ready(p):
                    ready_before[key] = ready_before.get(key, 0) + 1
        evicted = []
        for pod in batch:
            change = evict(core, pod, deadline=deadline, force=force, dry_run=dry_run, sleep=sleep, log=log)
            if change is not None:
                changes.append(change)
                evicted.append(pod)
        if dry_run or not evicted:
            continue
        while not replacements_ready(core, evicted, ready_before):
            if time.monotonic() >= deadline:
                raise TemporaryError(f"replacements of batch {start // batch_size + 1} "
                                     f"({', '.join(name_of(p) for p in evicted)}) not Ready in {batch_timeout}s")
            sleep(poll)
        if log is not None:
            log.info("batch %d: %d pod(s) moved, replacements Ready", start // batch_size + 1, len(evicted))
    return changes
