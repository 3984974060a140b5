"""Workload pods: find those on given nodes and move them with the Eviction API, in batches.

Evictions respect PodDisruptionBudgets: a 429 is retried with backoff until the batch timeout and only
then, and only with ``force``, is the pod deleted. DaemonSet pods and mirror pods are never moved;
pods without a controller are refused unless forced (as ``kubectl drain`` does).

A batch is done when every evicted pod has its replacement: a pod of the same workload
(``readiness.workload_of``: a Deployment through its ReplicaSets, a StatefulSet's same ordinal) with a
UID not seen before the eviction, Ready on a node of the target CNI (``readiness.is_replacement``); one
replacement stands in for one evicted pod. A bare pod (forced) only has to be gone. Each wait pass
reads the nodes once and the pods once per namespace of the batch, whatever the cluster's size.

Two ways to drive it: ``move`` runs every batch in the caller (and sleeps while it waits); the cutover's
operator evicts one batch at a time with ``next_batch``/``evict_batch`` and waits for its replacements
in the triggerer (``batch_trigger``), the ``Batch`` carried as ``Batch.to_dict()``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from cilium_migration.audit import Change
from cilium_migration.clients import items
from cilium_migration.errors import PermanentError, TemporaryError, api_status, is_not_found
from cilium_migration.readiness import (
    CILIUM,
    controller_of,
    is_replacement,
    name_of,
    pod_node,
    uid_of,
    workload_of,
    workload_pods_on,
)

Obj = dict[str, Any]


def pods_on_nodes(core: Any, node_names: Iterable[str]) -> list[Obj]:
    """Every pod bound to these nodes, all namespaces: one list of all pods, filtered here (one request
    whatever the number of nodes)."""
    names = set(node_names)
    if not names:
        return []
    return [p for p in items(core.list_pod_for_all_namespaces) if pod_node(p) in names]


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


@dataclass(frozen=True)
class Batch:
    """Pods evicted together, the UIDs that existed in their namespaces before, and the CNI whose nodes
    their replacements must be Ready on."""

    evicted: tuple[Obj, ...]
    seen_uids: frozenset[str]
    cni: str = CILIUM

    @property
    def namespaces(self) -> list[str]:
        return sorted({_ns(p) for p in self.evicted})

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable (a trigger's argument): the pods cut down to what ``unreplaced`` reads."""
        return {"evicted": [slim(p) for p in self.evicted], "seen_uids": sorted(self.seen_uids), "cni": self.cni}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Batch:
        return cls(tuple(data["evicted"]), frozenset(data["seen_uids"]), str(data.get("cni", CILIUM)))


def slim(pod: Obj) -> Obj:
    """A pod's name, namespace, UID, labels, owners and node: what identifies it and its workload."""
    meta = pod.get("metadata") or {}
    return {"metadata": {k: meta[k] for k in ("name", "namespace", "uid", "labels", "ownerReferences") if k in meta},
            "spec": {"nodeName": (pod.get("spec") or {}).get("nodeName")}}


def workload_uids(core: Any, pods: Iterable[Obj]) -> frozenset[str]:
    """The UIDs of every pod now of the same workloads as ``pods`` (and of ``pods`` themselves): what a
    replacement must not be. One list per namespace; only these pods can count as replacements, so the
    set stays as small as the workloads."""
    pods = list(pods)
    keys = {key for p in pods if (key := workload_of(p)) is not None}
    now = [p for ns in sorted({_ns(p) for p in pods}) for p in items(core.list_namespaced_pod, ns)]
    return frozenset({uid_of(p) for p in now if workload_of(p) in keys} | {uid_of(p) for p in pods})


def unreplaced(batch: Batch, pods: Iterable[Obj], nodes: Iterable[Obj]) -> list[Obj]:
    """The evicted pods still without a replacement, given the pods and nodes now (no API calls): each
    needs its own pod of the same workload with a new UID, Ready on a ``batch.cni`` node; a bare pod
    only has to be gone."""
    by_name = {name_of(n): n for n in nodes}
    pods = list(pods)
    present = {uid_of(p) for p in pods}
    spare = Counter(key for p in pods if (key := workload_of(p)) is not None
                    and is_replacement(p, seen_uids=batch.seen_uids, nodes=by_name, cni=batch.cni))
    waiting = []
    for pod in batch.evicted:
        key = workload_of(pod)
        if key is None:
            if uid_of(pod) in present:
                waiting.append(pod)
        elif spare[key] > 0:
            spare[key] -= 1
        else:
            waiting.append(pod)
    return waiting


def waiting_for_replacements(core: Any, batch: Batch) -> list[Obj]:
    """``unreplaced`` against the cluster now: the nodes once, the pods once per namespace of the batch."""
    nodes = items(core.list_node)
    pods = [p for ns in batch.namespaces for p in items(core.list_namespaced_pod, ns)]
    return unreplaced(batch, pods, nodes)


def _listed(pods: Iterable[Obj]) -> str:
    return ", ".join(f"{_ns(p)}/{name_of(p)}" for p in pods)


def movable(core: Any, node_names: Iterable[str], *, force: bool = False) -> list[Obj]:
    """The workload pods still on these nodes (not already terminating), in order; ``PermanentError`` if
    some have no controller and ``force`` is off (eviction would lose them)."""
    pods = [p for p in workloads_on_nodes(core, node_names)
            if not (p.get("metadata") or {}).get("deletionTimestamp")]
    bare = [p for p in pods if controller_of(p) is None]
    if bare and not force:
        raise PermanentError(f"pods without a controller would be lost by eviction: {_listed(bare)}; move "
                             "them by hand or set force_evictions")
    return pods


def evict_batch(core: Any, chosen: Iterable[Obj], *, deadline: float, force: bool = False, dry_run: bool = False,
                sleep: Callable[[float], None] = time.sleep, log: Any = None,
                target_cni: str = CILIUM) -> tuple[list[Change], Batch | None]:
    """Evict these pods (``evict``: PDB-respecting until ``deadline``, then forced only with ``force``).
    Returns the changes and the batch whose replacements to wait for (None: nothing to wait for, as in
    a dry run or when every pod was already gone)."""
    chosen = list(chosen)
    seen = workload_uids(core, chosen) if not dry_run else frozenset()
    changes, evicted = [], []
    for pod in chosen:
        change = evict(core, pod, deadline=deadline, force=force, dry_run=dry_run, sleep=sleep, log=log)
        if change is not None:
            changes.append(change)
            evicted.append(pod)
    if dry_run or not evicted:
        return changes, None
    return changes, Batch(tuple(evicted), seen | {uid_of(p) for p in evicted}, target_cni)


def listed(pods: Iterable[Obj]) -> str:
    """``namespace/name, ...`` for messages."""
    return _listed(pods)


def move(core: Any, node_names: Iterable[str], *, batch_size: int, batch_timeout: float, force: bool = False,
         dry_run: bool = False, poll: float = 1.0, sleep: Callable[[float], None] = time.sleep,
         log: Any = None, target_cni: str = CILIUM) -> list[Change]:
    """Evict workload pods off these nodes, ``batch_size`` at a time, each batch's replacements Ready on
    ``target_cni`` nodes before the next, all in the caller. Callers cordon the nodes first. Re-running
    finds only the pods still there."""
    pods = movable(core, node_names, force=force)
    changes: list[Change] = []
    for start in range(0, len(pods), batch_size):
        number, chosen = start // batch_size + 1, pods[start:start + batch_size]
        deadline = time.monotonic() + batch_timeout
        evicted, batch = evict_batch(core, chosen, deadline=deadline, force=force, dry_run=dry_run, sleep=sleep,
                                     log=log, target_cni=target_cni)
        changes += evicted
        if batch is None:
            continue
        while waiting := waiting_for_replacements(core, batch):
            if time.monotonic() >= deadline:
                raise TemporaryError(f"batch {number}: no replacement Ready on a {target_cni} node in "
                                     f"{batch_timeout}s for {_listed(waiting)}")
            sleep(poll)
        if log is not None:
            log.info("batch %d: %d pod(s) moved, replacements Ready on %s nodes", number, len(batch.evicted),
                     target_cni)
    return changes
