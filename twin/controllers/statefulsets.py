"""The StatefulSet controller: pods with stable names ``<statefulset>-0..N-1``, created and replaced in order.

Rules (as kube-controller-manager's StatefulSet controller):
- The pods of a StatefulSet are the ones whose ``controller: true`` ownerReference is it; a pod's ordinal
  is the number after the StatefulSet's name. Pods are created from the template with that reference,
  ``spec.hostname`` = the pod's name, ``spec.subdomain`` = ``spec.serviceName``, and the labels
  ``controller-revision-hash`` (``<statefulset>-<template hash>``), ``statefulset.kubernetes.io/pod-name``
  and ``apps.kubernetes.io/pod-index``. They are created unbound: the scheduler places them.
- ``podManagementPolicy: OrderedReady`` (the default): ordinal i is created only when every lower one is
  Running and Ready; a missing ordinal (deleted, evicted) is recreated with the same name and a new UID,
  and nothing else happens in that pass. Scaling down deletes the highest ordinal first, one at a time,
  once every lower one is Running and Ready. ``Parallel``: every missing ordinal is created, and every
  surplus one deleted, at once. Failed or Succeeded pods are deleted (and so recreated).
- ``updateStrategy: RollingUpdate`` (the default): when the template changes (``kubectl rollout restart``
  patches ``kubectl.kubernetes.io/restartedAt`` into its annotations), the pod with the highest ordinal
  still on an older revision is deleted, only while every pod is Running and Ready (maxUnavailable 1);
  it comes back on the new revision. ``OnDelete``: only deleted pods come back updated. ``partition``,
  ``volumeClaimTemplates`` and ControllerRevision objects are not modelled.
- Status: observedGeneration, replicas (pods that exist), readyReplicas, availableReplicas
  (``minReadySeconds``), currentReplicas and updatedReplicas (pods on ``currentRevision`` and
  ``updateRevision``), collisionCount; ``currentRevision`` becomes ``updateRevision`` once a rolling
  update has every replica updated and Ready (what ``kubectl rollout status sts`` waits for).
"""

from __future__ import annotations

from typing import Any

from twin.controllers.base import (
    Controller,
    controller_ref,
    labels_of,
    pod_available,
    pod_from_template,
    pod_ready,
    template_hash,
)
from twin.resources import PODS, STATEFULSETS
from twin.store import ApiError, Obj

REVISION_LABEL = "controller-revision-hash"
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
FINISHED = ("Succeeded", "Failed")


def replicas_of(sts: Obj) -> int:
    value = (sts.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def ordered_ready(sts: Obj) -> bool:
    """``OrderedReady`` pod management (the default), as opposed to ``Parallel``."""
    return (sts.get("spec") or {}).get("podManagementPolicy", "OrderedReady") != "Parallel"


def rolling_update(sts: Obj) -> bool:
    strategy = (sts.get("spec") or {}).get("updateStrategy") or {}
    return strategy.get("type", "RollingUpdate") == "RollingUpdate"


def update_revision(sts: Obj) -> str:
    """``<statefulset>-<hash of the template>``: the revision new pods are created at."""
    return f"{sts['metadata']['name']}-{template_hash((sts.get('spec') or {}).get('template') or {})}"


def ordinal_of(sts_name: str, pod: Obj) -> int | None:
    """The pod's ordinal: the number after ``<statefulset>-`` in its name, else None."""
    prefix, _, number = pod["metadata"]["name"].rpartition("-")
    return int(number) if prefix == sts_name and number.isdigit() else None


def revision_of(pod: Obj) -> str:
    return labels_of(pod).get(REVISION_LABEL, "")


class StatefulSetController(Controller):
    """Keeps ``<name>-0..N-1`` running in order, rolls template changes from the highest ordinal down."""

    name = "statefulsets"
    watches = (STATEFULSETS, PODS)

    def reconcile(self) -> None:
        by_owner: dict[str, list[Obj]] = {}
        for pod in self.store.iter_all(PODS):
            ref = controller_ref(pod) or {}
            if ref.get("kind") == "StatefulSet" and not pod["metadata"].get("deletionTimestamp"):
                by_owner.setdefault(ref.get("uid", ""), []).append(pod)
        for sts in self.store.iter_all(STATEFULSETS):
            if not sts["metadata"].get("deletionTimestamp"):
                self._sync(sts, by_owner.get(sts["metadata"]["uid"], []))

    def _sync(self, sts: Obj, pods: list[Obj]) -> None:
        name, replicas = sts["metadata"]["name"], replicas_of(sts)
        slots: dict[int, Obj] = {}
        condemned: list[tuple[int, Obj]] = []
        for pod in pods:
            ordinal = ordinal_of(name, pod)
            if ordinal is None:
                continue
            if ordinal < replicas:
                slots[ordinal] = pod
            else:
                condemned.append((ordinal, pod))
        self._converge(sts, replicas, slots, sorted(condemned, key=lambda c: c[0], reverse=True))
        self._write_status(sts)

    def _converge(self, sts: Obj, replicas: int, slots: dict[int, Obj],
                  condemned: list[tuple[int, Obj]]) -> None:
        """One pass of the rules: recreate finished pods, create missing ordinals, delete surplus ones,
        roll one pod to the update revision; under OrderedReady, stop at the first step that must wait."""
        ordered = ordered_ready(sts)
        for ordinal in [o for o, p in slots.items() if (p.get("status") or {}).get("phase") in FINISHED]:
            self.delete(PODS, slots.pop(ordinal))
        for ordinal in range(replicas):
            pod = slots.get(ordinal)
            if pod is None:
                created = self._create_pod(sts, ordinal)
                if created is not None:
                    slots[ordinal] = created
                if ordered:
                    return
            elif ordered and not pod_ready(pod):
                return
        for _, pod in condemned:
            if ordered and not all(pod_ready(p) for p in slots.values()):
                return
            self.delete(PODS, pod)
            if ordered:
                return
        if rolling_update(sts) and len(slots) == replicas and all(pod_ready(p) for p in slots.values()):
            target = update_revision(sts)
            stale = [o for o, p in slots.items() if revision_of(p) != target]
            if stale:
                self.delete(PODS, slots[max(stale)])

    def _create_pod(self, sts: Obj, ordinal: int) -> Obj | None:
        """The pod for ``ordinal`` from the template; None when the name is taken by a pod not ours."""
        name = f"{sts['metadata']['name']}-{ordinal}"
        spec = sts.get("spec") or {}
        pod = pod_from_template(spec.get("template") or {}, sts, {
            REVISION_LABEL: update_revision(sts), POD_NAME_LABEL: name, POD_INDEX_LABEL: str(ordinal)})
        pod["metadata"]["name"] = name
        pod["spec"]["hostname"] = name
        if spec.get("serviceName"):
            pod["spec"]["subdomain"] = spec["serviceName"]
        try:
            return self.store.create(PODS, pod)
        except ApiError as err:
            if err.code == 409:
                self.log.warning("pod %s/%s exists and is not owned by its statefulset",
                                 sts["metadata"]["namespace"], name)
                return None
            raise

    def _write_status(self, sts: Obj) -> None:
        meta = sts["metadata"]
        pods = [p for p in self.store.list(PODS, meta["namespace"])[0]
                if (controller_ref(p) or {}).get("uid") == meta["uid"]
                and not p["metadata"].get("deletionTimestamp")]
        replicas = replicas_of(sts)
        min_ready = int((sts.get("spec") or {}).get("minReadySeconds") or 0)
        update = update_revision(sts)
        current = (sts.get("status") or {}).get("currentRevision") or update
        ready = sum(1 for p in pods if pod_ready(p))
        updated = sum(1 for p in pods if revision_of(p) == update)
        if rolling_update(sts) and len(pods) == replicas and updated == replicas and ready == replicas:
            current = update
        status: dict[str, Any] = {
            "observedGeneration": meta.get("generation", 1),
            "replicas": len(pods),
            "readyReplicas": ready,
            "currentReplicas": sum(1 for p in pods if revision_of(p) == current),
            "updatedReplicas": updated,
            "availableReplicas": sum(1 for p in pods if pod_available(p, min_ready)),
            "currentRevision": current,
            "updateRevision": update,
            "collisionCount": int((sts.get("status") or {}).get("collisionCount") or 0),
        }

        def change(obj: Obj) -> None:
            old = obj.get("status") or {}
            obj["status"] = {**({"conditions": old["conditions"]} if "conditions" in old else {}), **status}

        self.patch(STATEFULSETS, meta["namespace"], meta["name"], change, status=True)
