"""The migration's progress, recorded in the cluster: ConfigMap ``cilium-migration-progress`` in Cilium's
namespace, so that a re-run never goes backwards.

Rules:
- Phases in runbook order: ``preflight``, ``baseline``, then the node-pool strategy's ``fence_old_cni``,
  ``cilium_nodes``, ``cutover``, ``decommission`` or the in-place strategy's ``cilium_beside``,
  ``restart_pods``, ``remove_old_cni`` (one order holds both: each strategy's phases keep theirs); a
  task's phase is its TaskGroup. ``rollback`` comes after all of them.
- One migration at a time: a record of one strategy's phase (not rolled back) makes the other strategy's
  preflight refuse (``other_strategy``).
- A forward step first records its phase (the record only moves forward), then acts. A step whose phase
  lies behind the recorded one, or any forward step of a run that has rolled back, changes nothing and
  says why: acting would undo a later phase (``install_cilium`` cleared after decommission would turn
  the unmanaged-pod watcher off again).
- The rollback records ``rollback``. A new run starts over after an earlier run's rollback, and resumes
  from the phase an earlier run reached (after "hold").
- The preflight snapshot is kept in the record: a re-run of ``preflight.snapshot`` gives back the one
  the rollback needs, not the cluster's later state, and a run that resumes uses the first run's.
- A dry run reads the record and writes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cilium_migration import owned_configmaps
from cilium_migration.audit import Change

NAME = "cilium-migration-progress"
NODE_POOL_PHASES = ("fence_old_cni", "cilium_nodes", "cutover", "decommission")
IN_PLACE_PHASES = ("cilium_beside", "restart_pods", "remove_old_cni")
PHASES = ("preflight", "baseline", "fence_old_cni", "cilium_nodes", "cilium_beside", "cutover", "restart_pods",
          "decommission", "remove_old_cni")
ROLLBACK = "rollback"


def phase_of(task_id: str) -> str:
    """The phase of a task: its TaskGroup (the part of its id before the first dot)."""
    return task_id.split(".", 1)[0]


@dataclass(frozen=True)
class Progress:
    """The record as read: the furthest phase started, by which run; the preflight snapshot."""

    phase: str | None = None
    run_id: str | None = None
    snapshot: dict[str, Any] | None = None
    history: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def from_data(cls, data: dict[str, str] | None) -> Progress:
        data = data or {}
        return cls(data.get("phase"), data.get("run_id"), json.loads(data.get("snapshot") or "null"),
                   json.loads(data.get("history") or "[]"))

    def rolled_back(self) -> bool:
        return self.phase == ROLLBACK

    def other_strategy(self, in_place: bool) -> str | None:
        """Why a run of the other strategy may not start: a migration of this one is under way."""
        theirs = NODE_POOL_PHASES if in_place else IN_PLACE_PHASES
        if self.phase in theirs:
            kind = "node-pool" if in_place else "in-place"
            return (f"a {kind} migration is under way (phase {self.phase}, run {self.run_id}, ConfigMap {NAME}): "
                    f"finish it or roll it back with its own DAG first")
        return None

    def why_not(self, phase: str, run_id: str) -> str | None:
        """Why a forward step of ``phase`` in ``run_id`` must change nothing, or None when it may act."""
        if self.phase is None or phase not in PHASES:
            return None
        if self.rolled_back():
            if self.run_id == run_id:
                return f"this run rolled back ({NAME}): a forward step would undo the rollback"
            return None  # a new run starts over
        if self.phase in PHASES and PHASES.index(self.phase) > PHASES.index(phase):
            return (f"phase {self.phase} has already started (run {self.run_id}, {NAME}): this {phase} step "
                    f"would undo it, so it leaves the cluster as it is; roll back to go back")
        return None

    def moves_to(self, phase: str, run_id: str) -> bool:
        """Whether recording ``phase`` for ``run_id`` changes the record (it only moves forward)."""
        if phase == ROLLBACK:
            return not (self.rolled_back() and self.run_id == run_id)
        if self.phase is None or self.rolled_back():
            return True
        return self.phase in PHASES and PHASES.index(phase) > PHASES.index(self.phase)


def read(core: Any, namespace: str) -> Progress:
    return Progress.from_data(owned_configmaps.read_data(core, namespace, NAME))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def advance(core: Any, namespace: str, current: Progress, phase: str, run_id: str, *,
            dry_run: bool = False) -> list[Change]:
    """Record ``phase`` as started by ``run_id`` when that moves the record forward (or starts a run
    over after an earlier run's rollback); a change record when it did."""
    if not current.moves_to(phase, run_id):
        return []
    history = [*current.history, {"phase": phase, "run_id": run_id, "at": _now()}][-50:]
    data = {"phase": phase, "run_id": run_id, "history": json.dumps(history)}
    if current.rolled_back() and phase != ROLLBACK:
        data["snapshot"] = "null"  # a new migration takes its own
    owned_configmaps.merge_data(core, namespace, NAME, data, dry_run=dry_run)
    return [Change("record", "ConfigMap", NAME, namespace, {"phase": current.phase, "run_id": current.run_id},
                   {"phase": phase, "run_id": run_id}, dry_run)]


def keep_snapshot(core: Any, namespace: str, snapshot: dict[str, Any], *, dry_run: bool = False) -> list[Change]:
    """Store the preflight snapshot in the record, unless it holds that one already (a retry)."""
    text = json.dumps(snapshot, sort_keys=True)
    if (owned_configmaps.read_data(core, namespace, NAME) or {}).get("snapshot") == text:
        return []
    owned_configmaps.merge_data(core, namespace, NAME, {"snapshot": text}, dry_run=dry_run)
    return [Change("record", "ConfigMap", NAME, namespace, None, {"snapshot": "preflight snapshot"}, dry_run)]
