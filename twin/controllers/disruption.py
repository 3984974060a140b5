"""The disruption controller: PodDisruptionBudget status, and a record of every budget violation.

Rules:
- ``status`` of each PDB follows ``twin.pdb.pdb_status`` (currentHealthy, desiredHealthy, expectedPods,
  disruptionsAllowed, observedGeneration, condition DisruptionAllowed); the condition's
  lastTransitionTime changes only when its status does.
- A violation is recorded when a pod covered by a budget stops being healthy (not Ready, being
  deleted, or deleted) and the budget's currentHealthy is then below desiredHealthy. Recording is
  done by a store listener, so it sees every transition, started or not.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from twin import pdb as budgets
from twin.config import Timing
from twin.controllers.base import Controller
from twin.faults import Faults
from twin.resources import DEPLOYMENTS, PDBS, PODS, REPLICASETS, STATEFULSETS, ResourceType
from twin.store import Obj, Store, now_iso


class DisruptionController(Controller):
    name = "disruption"
    watches = (PODS, PDBS, DEPLOYMENTS, REPLICASETS, STATEFULSETS)

    def __init__(self, store: Store, timing: Timing, faults: Faults) -> None:
        super().__init__(store, timing, faults)
        self.violations: list[dict[str, Any]] = []
        self._violations_lock = threading.Lock()
        store.add_listener(self._record_violation)

    def reconcile(self) -> None:
        for pdb in self.store.iter_all(PDBS):
            status = budgets.pdb_status(self.store, pdb)
            if _same_status(pdb.get("status") or {}, status):
                continue
            meta = pdb["metadata"]
            self.patch(PDBS, meta["namespace"], meta["name"], _status_setter(status), status=True)

    def _record_violation(self, event_type: str, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        """Store listener (runs under the store lock; reads only)."""
        if rt is not PODS or old is None or not budgets.pod_is_healthy(old):
            return
        if event_type != "DELETED" and budgets.pod_is_healthy(obj):
            return
        for pdb in budgets.budgets_for(self.store, old):
            healthy, desired, expected = budgets.budget_numbers(self.store, pdb)
            if healthy < desired:
                with self._violations_lock:
                    self.violations.append({
                        "time": now_iso(),
                        "pdb": f"{pdb['metadata']['namespace']}/{pdb['metadata']['name']}",
                        "pod": f"{old['metadata'].get('namespace')}/{old['metadata']['name']}",
                        "node": (old.get("spec") or {}).get("nodeName") or "",
                        "event": "deleted" if event_type == "DELETED" else "unhealthy",
                        "currentHealthy": healthy,
                        "desiredHealthy": desired,
                        "expectedPods": expected,
                    })


def _without_times(status: dict[str, Any]) -> dict[str, Any]:
    out = dict(status)
    out["conditions"] = [{k: v for k, v in c.items() if k != "lastTransitionTime"}
                         for c in status.get("conditions") or []]
    return out


def _same_status(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    return _without_times({k: current.get(k) for k in wanted}) == _without_times(wanted)


def _status_setter(wanted: dict[str, Any]) -> Callable[[Obj], None]:
    return lambda draft: _set_status(draft, wanted)


def _set_status(draft: Obj, wanted: dict[str, Any]) -> None:
    old = {c.get("type"): c for c in (draft.get("status") or {}).get("conditions") or []}
    status = dict(draft.get("status") or {})
    status.update(wanted)
    conditions = []
    for c in wanted["conditions"]:
        previous = old.get(c["type"])
        same = previous is not None and previous.get("status") == c["status"]
        stamp = previous.get("lastTransitionTime") if same and previous else None
        conditions.append({**c, "lastTransitionTime": stamp or now_iso()})
    status["conditions"] = conditions
    draft["status"] = status
