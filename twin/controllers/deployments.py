"""The Deployment and ReplicaSet controllers: Deployments -> ReplicaSets -> pods.

Rules (as kube-controller-manager):
- A Deployment's template has a hash; its ReplicaSet for that template is ``<deployment>-<hash>``,
  labelled and selected by ``pod-template-hash``, owned by the Deployment. An older ReplicaSet whose
  template hash matches again (a rollback) becomes the new one. Revisions are annotated.
- RollingUpdate (maxSurge/maxUnavailable, defaults 25%/25%; surge rounds up, unavailable down; both 0
  means maxUnavailable 1): the new ReplicaSet grows while all replicas stay within replicas + maxSurge;
  old ones shrink (unhealthy pods first) while available pods stay at least replicas - maxUnavailable.
  Recreate: old ReplicaSets go to 0 and their pods away before the new one grows. A template change
  (``kubectl rollout restart`` patches ``kubectl.kubernetes.io/restartedAt``) starts a rollout; a
  replicas change scales. Paused deployments only scale. Old ReplicaSets at 0 beyond
  ``revisionHistoryLimit`` (default 10) are deleted.
- A ReplicaSet keeps ``spec.replicas`` active pods named ``<replicaset>-<5 chars>``: deleted or evicted
  pods are recreated (unscheduled; the scheduler places them), surplus pods are deleted, unassigned,
  pending and not-ready ones first, then the newest.
- Deployment status: observedGeneration, replicas, updatedReplicas, readyReplicas, availableReplicas,
  unavailableReplicas, conditions Available (MinimumReplicasAvailable) and Progressing
  (NewReplicaSetAvailable once complete; ProgressDeadlineExceeded after progressDeadlineSeconds
  without progress), which is what ``kubectl rollout status`` reads.
"""

from __future__ import annotations

import copy
import time
from typing import Any

from twin.controllers.base import (
    Controller,
    condition,
    owned_by,
    owner_ref,
    pod_active,
    pod_available,
    pod_from_template,
    pod_ready,
    scaled_int_or_percent,
    template_hash,
)
from twin.resources import DEPLOYMENTS, PODS, REPLICASETS
from twin.selectors import labels_match, selector_from_dict
from twin.store import ApiError, Obj, now_iso

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def _replicas(obj: Obj) -> int:
    value = obj.get("spec", {}).get("replicas")
    return 1 if value is None else int(value)


def _status(obj: Obj, key: str) -> int:
    return int((obj.get("status") or {}).get(key) or 0)


def _revision(rs: Obj) -> int:
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def rolling_limits(deployment: Obj) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) resolved against spec.replicas."""
    replicas = _replicas(deployment)
    strategy = deployment["spec"].get("strategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return 0, 0
    rolling = strategy.get("rollingUpdate") or {}
    surge = scaled_int_or_percent(rolling.get("maxSurge", "25%"), replicas, round_up=True)
    unavailable = scaled_int_or_percent(rolling.get("maxUnavailable", "25%"), replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def deletion_order(pods: list[Obj]) -> list[Obj]:
    """Pods in the order a ReplicaSet deletes them: unassigned, pending, not ready, then newest first."""
    newest_first = sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp", ""), reverse=True)
    return sorted(newest_first, key=lambda p: (
        bool(p["spec"].get("nodeName")),
        PHASE_RANK.get((p.get("status") or {}).get("phase", "Pending"), 0),
        pod_ready(p)))


class DeploymentController(Controller):
    """Rolls Deployments out through ReplicaSets and keeps every ReplicaSet's pods at its replicas."""

    name = "deployments"
    watches = (DEPLOYMENTS, REPLICASETS, PODS)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._progress: dict[str, tuple[tuple[int, ...], float]] = {}  # uid -> (status counts, since)

    def reconcile(self) -> None:
        """ReplicaSets first (their status is what Deployments read), Deployments, then ReplicaSets again."""
        self._sync_replicasets()
        replicasets = list(self.store.iter_all(REPLICASETS))
        seen = set()
        for deployment in self.store.iter_all(DEPLOYMENTS):
            seen.add(deployment["metadata"]["uid"])
            self._sync_deployment(deployment, [rs for rs in replicasets if owned_by(rs, deployment)])
        for uid in set(self._progress) - seen:
            del self._progress[uid]
        self._sync_replicasets()

    def _sync_replicasets(self) -> None:
        pods_by_owner: dict[str, list[Obj]] = {}
        for pod in self.store.iter_all(PODS):
            if pod_active(pod):
                for ref in pod["metadata"].get("ownerReferences") or []:
                    if ref.get("controller"):
                        pods_by_owner.setdefault(ref.get("uid", ""), []).append(pod)
        for rs in self.store.iter_all(REPLICASETS):
            self._sync_replicaset(rs, pods_by_owner.get(rs["metadata"]["uid"], []))

    # ---- Deployments ---------------------------------------------------------------------------

    def _sync_deployment(self, d: Obj, owned: list[Obj]) -> None:
        spec = d["spec"]
        template = spec.get("template") or {}
        revision_hash = template_hash(template)
        new_rs = next((rs for rs in owned if (rs["metadata"].get("labels") or {}).get(HASH_LABEL)
                       == revision_hash), None)
        old = sorted((rs for rs in owned if rs is not new_rs),
                     key=lambda rs: (_revision(rs), rs["metadata"].get("creationTimestamp", "")))
        replicas = _replicas(d)
        surge, max_unavailable = rolling_limits(d)
        recreate = (spec.get("strategy") or {}).get("type") == "Recreate"
        paused = bool(spec.get("paused"))
        max_revision = max([_revision(rs) for rs in owned] or [0])
        if not paused:
            if new_rs is None:
                new_rs = self._create_replicaset(d, template, revision_hash, max_revision + 1,
                                                 0 if recreate and any(_replicas(r) for r in old) else None)
                if new_rs is None:
                    return
            elif _revision(new_rs) < max_revision:
                new_rs = self._annotate_revision(new_rs, max_revision + 1) or new_rs
            if recreate:
                self._recreate(new_rs, old, replicas)
            else:
                self._roll(new_rs, old, replicas, surge, max_unavailable)
        elif new_rs is not None and not any(_replicas(r) for r in old):
            self._scale(new_rs, replicas)
        self._cleanup(d, old)
        names = {r["metadata"]["name"] for r in owned + ([new_rs] if new_rs is not None else [])}
        owned = [rs for rs in (self.store.get(REPLICASETS, d["metadata"]["namespace"], n) for n in sorted(names))
                 if rs is not None]
        if new_rs is not None:
            new_rs = self.store.get(REPLICASETS, d["metadata"]["namespace"], new_rs["metadata"]["name"])
        self._write_status(d, new_rs, owned, max_unavailable, paused)

    def _create_replicaset(self, d: Obj, template: Obj, revision_hash: str, revision: int,
                           initial: int | None) -> Obj | None:
        replicas = _replicas(d)
        surge, _ = rolling_limits(d)
        if initial is None:
            current = sum(_replicas(rs) for rs in self.store.iter_all(REPLICASETS) if owned_by(rs, d))
            initial = max(0, min(replicas, replicas + surge - current))
        rs_template = copy.deepcopy(template)
        rs_template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = revision_hash
        selector = copy.deepcopy(d["spec"].get("selector") or {})
        selector.setdefault("matchLabels", {})[HASH_LABEL] = revision_hash
        name = f"{d['metadata']['name']}-{revision_hash}"
        rs: Obj = {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "namespace": d["metadata"]["namespace"],
                "labels": dict(rs_template["metadata"]["labels"]),
                "annotations": {REVISION: str(revision), DESIRED_REPLICAS: str(replicas),
                                MAX_REPLICAS: str(replicas + surge)},
                "ownerReferences": [owner_ref(d)],
            },
            "spec": {"replicas": initial, "minReadySeconds": int(d["spec"].get("minReadySeconds") or 0),
                     "selector": selector, "template": rs_template},
            "status": {"replicas": 0},
        }
        try:
            return self.store.create(REPLICASETS, rs)
        except ApiError as err:
            if err.code == 409:
                self.log.warning("replicaset %s exists and is not owned by its deployment", name)
                return None
            raise

    def _annotate_revision(self, rs: Obj, revision: int) -> Obj | None:
        def change(obj: Obj) -> None:
            obj["metadata"].setdefault("annotations", {})[REVISION] = str(revision)
        return self.patch(REPLICASETS, rs["metadata"]["namespace"], rs["metadata"]["name"], change)

    def _scale(self, rs: Obj, replicas: int) -> Obj:
        if _replicas(rs) == replicas:
            return rs

        def change(obj: Obj) -> None:
            obj["spec"]["replicas"] = replicas
        return self.patch(REPLICASETS, rs["metadata"]["namespace"], rs["metadata"]["name"], change) or rs

    def _recreate(self, new_rs: Obj, old: list[Obj], replicas: int) -> None:
        for rs in old:
            self._scale(rs, 0)
        if any(_status(rs, "replicas") for rs in old):
            return
        self._scale(new_rs, replicas)

    def _roll(self, new_rs: Obj, old: list[Obj], replicas: int, surge: int, max_unavailable: int) -> None:
        # scale the new ReplicaSet up (or down, when replicas shrank)
        if _replicas(new_rs) > replicas:
            new_rs = self._scale(new_rs, replicas)
        elif _replicas(new_rs) < replicas:
            current = _replicas(new_rs) + sum(_replicas(rs) for rs in old)
            room = replicas + surge - current
            if room > 0:
                new_rs = self._scale(new_rs, _replicas(new_rs) + min(room, replicas - _replicas(new_rs)))
        # scale old ReplicaSets down
        old_total = sum(_replicas(rs) for rs in old)
        if old_total == 0:
            return
        all_total = _replicas(new_rs) + old_total
        min_available = replicas - max_unavailable
        new_unavailable = _replicas(new_rs) - _status(new_rs, "availableReplicas")
        budget = all_total - min_available - new_unavailable
        if budget <= 0:
            return
        remaining = {rs["metadata"]["name"]: _replicas(rs) for rs in old}
        for rs in old:  # unhealthy replicas first
            if budget <= 0:
                break
            unhealthy = _replicas(rs) - _status(rs, "availableReplicas")
            cut = min(budget, max(0, unhealthy), remaining[rs["metadata"]["name"]])
            if cut > 0:
                remaining[rs["metadata"]["name"]] -= cut
                budget -= cut
        available = _status(new_rs, "availableReplicas") + sum(
            min(_status(rs, "availableReplicas"), remaining[rs["metadata"]["name"]]) for rs in old)
        to_cut = available - min_available
        for rs in old:
            name = rs["metadata"]["name"]
            if to_cut > 0 and remaining[name] > 0:
                cut = min(to_cut, remaining[name])
                remaining[name] -= cut
                to_cut -= cut
            self._scale(rs, remaining[name])

    def _cleanup(self, d: Obj, old: list[Obj]) -> None:
        limit = d["spec"].get("revisionHistoryLimit")
        limit = 10 if limit is None else int(limit)
        idle = [rs for rs in old if _replicas(rs) == 0 and _status(rs, "replicas") == 0
                and self.store.get(REPLICASETS, rs["metadata"]["namespace"], rs["metadata"]["name"]) is not None]
        for rs in idle[:max(0, len(idle) - limit)]:
            self.delete(REPLICASETS, rs)

    def _write_status(self, d: Obj, new_rs: Obj | None, owned: list[Obj], max_unavailable: int,
                      paused: bool) -> None:
        replicas = _replicas(d)
        generation = d["metadata"].get("generation", 1)
        actual = sum(_status(rs, "replicas") for rs in owned)
        updated = _status(new_rs, "replicas") if new_rs is not None else 0
        ready = sum(_status(rs, "readyReplicas") for rs in owned)
        available = sum(_status(rs, "availableReplicas") for rs in owned)
        total = sum(_replicas(rs) for rs in owned)
        new_name = new_rs["metadata"]["name"] if new_rs is not None else ""
        complete = (new_rs is not None and updated == replicas and actual == replicas
                    and available >= replicas and _replicas(new_rs) == replicas)
        uid = d["metadata"]["uid"]
        counts = (generation, actual, updated, ready, available)
        now = time.monotonic()
        last = self._progress.get(uid)
        if last is None or last[0] != counts:
            self._progress[uid] = (counts, now)
            stalled_for = 0.0
        else:
            stalled_for = now - last[1]
        deadline = float(d["spec"].get("progressDeadlineSeconds") or 600)

        if paused:
            progressing = ("Unknown", "DeploymentPaused", "Deployment is paused")
        elif complete:
            progressing = ("True", "NewReplicaSetAvailable", f'ReplicaSet "{new_name}" has successfully progressed.')
        elif stalled_for > deadline:
            progressing = ("False", "ProgressDeadlineExceeded", f'ReplicaSet "{new_name}" has timed out progressing.')
        else:
            progressing = ("True", "ReplicaSetUpdated", f'ReplicaSet "{new_name}" is progressing.')
        if available >= replicas - max_unavailable:
            availability = ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
        else:
            availability = ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")

        def change(obj: Obj) -> None:
            status = obj.get("status") or {}
            new_status: dict[str, Any] = {"observedGeneration": generation, "replicas": actual,
                                          "updatedReplicas": updated, "readyReplicas": ready,
                                          "availableReplicas": available}
            if max(0, total - available):
                new_status["unavailableReplicas"] = max(0, total - available)
            conditions = []
            for kind, (value, reason, message) in (("Available", availability), ("Progressing", progressing)):
                current = condition(obj, kind) or {}
                same = current.get("status") == value and current.get("reason") == reason
                stamp = now_iso()
                conditions.append({
                    "type": kind, "status": value,
                    "lastUpdateTime": current.get("lastUpdateTime", stamp) if same and current.get(
                        "message") == message else stamp,
                    "lastTransitionTime": current.get("lastTransitionTime", stamp)
                    if current.get("status") == value else stamp,
                    "reason": reason, "message": message})
            new_status["conditions"] = conditions
            if "collisionCount" in status:
                new_status["collisionCount"] = status["collisionCount"]
            obj["status"] = new_status

        self.patch(DEPLOYMENTS, d["metadata"]["namespace"], d["metadata"]["name"], change, status=True)
        if new_rs is not None:
            revision = (new_rs["metadata"].get("annotations") or {}).get(REVISION)
            if revision and (d["metadata"].get("annotations") or {}).get(REVISION) != revision:
                def annotate(obj: Obj) -> None:
                    obj["metadata"].setdefault("annotations", {})[REVISION] = revision
                self.patch(DEPLOYMENTS, d["metadata"]["namespace"], d["metadata"]["name"], annotate)

    # ---- ReplicaSets ---------------------------------------------------------------------------

    def _sync_replicaset(self, rs: Obj, pods: list[Obj]) -> None:
        want = _replicas(rs)
        current = list(pods)
        if len(pods) < want:
            template = rs["spec"].get("template") or {}
            for _ in range(want - len(pods)):
                current.append(self.create_with_suffix(PODS, pod_from_template(template, rs, {}),
                                                       rs["metadata"]["name"] + "-"))
        elif len(pods) > want:
            doomed = deletion_order(pods)[:len(pods) - want]
            for pod in doomed:
                self.delete(PODS, pod)
            current = [p for p in pods if all(p is not d for d in doomed)]
        namespace, name = rs["metadata"]["namespace"], rs["metadata"]["name"]
        min_ready = int(rs["spec"].get("minReadySeconds") or 0)
        selector = selector_from_dict(rs["spec"].get("selector"))
        status: dict[str, Any] = {
            "replicas": len(current),
            "fullyLabeledReplicas": sum(1 for p in current if labels_match(selector, p["metadata"].get("labels"))),
            "readyReplicas": sum(1 for p in current if pod_ready(p)),
            "availableReplicas": sum(1 for p in current if pod_available(p, min_ready)),
            "observedGeneration": rs["metadata"].get("generation", 1),
        }
        status = {k: v for k, v in status.items() if v or k in ("replicas", "observedGeneration")}

        def change(obj: Obj) -> None:
            obj["status"] = status

        self.patch(REPLICASETS, namespace, name, change, status=True)
