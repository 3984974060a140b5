"""The controller base and the facts about pods and nodes every controller reads the same way.

Rules:
- ``reconcile()`` is one full, idempotent pass over the store; tests call it directly.
- ``start()`` runs it in a thread: on any store event for a resource type in ``watches`` (all types when
  empty), every ``timing.resync_s``, and at the deadlines a pass asks for with ``wake_in``.
- A pass that raises is logged and counted (``errors``), never fatal.
- Delays are measured with per-controller monotonic memos or object timestamps, never by sleeping.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from twin.config import Timing
from twin.faults import Faults
from twin.resources import PODS, ResourceType
from twin.store import ApiError, Obj, Store, now_iso

log = logging.getLogger(__name__)

DEBOUNCE_S = 0.005  # events arriving together are handled by one pass
CNI_ANNOTATION = "twin.cilium-migration.io/cni"
AWS_CNI, CILIUM = "aws-cni", "cilium"
NODEGROUP_LABEL = "eks.amazonaws.com/nodegroup"
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"
AGENT_NOT_READY_TAINT = "node.cilium.io/agent-not-ready"
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # what Kubernetes uses for generated name suffixes


class Controller:
    """A reconcile loop over the store, run in a background thread by ``start()``."""

    name = "controller"
    watches: tuple[ResourceType, ...] = ()

    def __init__(self, store: Store, timing: Timing, faults: Faults) -> None:
        self.store, self.timing, self.faults = store, timing, faults
        self.log = logging.getLogger(f"twin.controllers.{self.name}")
        self.errors = 0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._deadline: float | None = None
        self._deadline_lock = threading.Lock()
        self._listening = False

    def reconcile(self) -> None:
        raise NotImplementedError

    # ---- the loop ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        if not self._listening:
            self.store.add_listener(self._on_event)
            self._listening = True
        self._thread = threading.Thread(target=self._run, name=f"twin-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def wake_in(self, seconds: float) -> None:
        """Ask for a pass ``seconds`` from now (a delay a pass is waiting out)."""
        at = time.monotonic() + max(0.0, seconds)
        with self._deadline_lock:
            if self._deadline is None or at < self._deadline:
                self._deadline = at

    def reconcile_safely(self) -> None:
        if self.name in self.faults.controllers_down:
            return
        try:
            self.reconcile()
        except Exception:
            self.errors += 1
            self.log.exception("%s: reconcile failed", self.name)

    def _on_event(self, event_type: str, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        if self._thread is not None and (not self.watches or rt in self.watches):
            self._wake.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            timeout = self.timing.resync_s
            with self._deadline_lock:
                if self._deadline is not None:
                    timeout = min(timeout, max(0.0, self._deadline - time.monotonic()))
            self._wake.wait(timeout)
            if self._stopping.wait(DEBOUNCE_S):
                break
            self._wake.clear()
            with self._deadline_lock:
                if self._deadline is not None and self._deadline <= time.monotonic():
                    self._deadline = None
            self.reconcile_safely()

    # ---- writes that tolerate a vanished object ------------------------------------------------

    def patch(self, rt: ResourceType, namespace: str | None, name: str, change: Callable[[Obj], Any],
              *, status: bool = False) -> Obj | None:
        """``store.mutate``; None when the object is gone (404)."""
        try:
            return self.store.mutate(rt, namespace, name, change, subresource="status" if status else None)
        except ApiError as err:
            if err.code == 404:
                return None
            raise

    def delete(self, rt: ResourceType, obj: Obj) -> bool:
        """Delete this very object (uid precondition); False when it is already gone or replaced."""
        meta = obj["metadata"]
        try:
            self.store.delete(rt, meta.get("namespace"), meta["name"], uid=meta.get("uid"))
            return True
        except ApiError as err:
            if err.code in (404, 409):
                return False
            raise

    def create_with_suffix(self, rt: ResourceType, obj: Obj, prefix: str) -> Obj:
        """Create ``obj`` named ``prefix`` + 5 random safe characters, retrying on a name clash."""
        for _ in range(20):
            obj["metadata"]["name"] = prefix + "".join(random.choices(SAFE_ALPHABET, k=5))
            try:
                return self.store.create(rt, obj)
            except ApiError as err:
                if err.code != 409:
                    raise
        raise RuntimeError(f"no free name for {prefix}")


def run_until(controllers: Iterable[Controller], predicate: Callable[[], bool], timeout: float = 5.0,
              what: str = "condition", interval: float = 0.005) -> None:
    """Reconcile the controllers in turn until ``predicate()`` holds; TimeoutError after ``timeout``."""
    chain = list(controllers)
    deadline = time.monotonic() + timeout
    while True:
        for c in chain:
            c.reconcile()
        if predicate():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# ---- facts about objects ------------------------------------------------------------------------

def labels_of(obj: Obj) -> dict[str, str]:
    return obj.get("metadata", {}).get("labels") or {}


def controller_ref(obj: Obj) -> dict[str, Any] | None:
    for ref in obj.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def owner_ref(owner: Obj) -> dict[str, Any]:
    """The ownerReference a controller puts on what it creates."""
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def owned_by(obj: Obj, owner: Obj) -> bool:
    ref = controller_ref(obj)
    return ref is not None and ref.get("uid") == owner["metadata"]["uid"]


def condition(obj: Obj, kind: str) -> dict[str, Any] | None:
    for c in obj.get("status", {}).get("conditions") or []:
        if c.get("type") == kind:
            return c
    return None


def condition_true(obj: Obj, kind: str) -> bool:
    c = condition(obj, kind)
    return c is not None and c.get("status") == "True"


def set_condition(status: dict[str, Any], kind: str, value: str, reason: str | None = None,
                  message: str | None = None, *, heartbeat: str | None = None,
                  probe: bool = False) -> None:
    """Upsert a condition in ``status``; lastTransitionTime changes only when the status does."""
    conditions = status.setdefault("conditions", [])
    current = next((c for c in conditions if c.get("type") == kind), None)
    stamp = now_iso()
    new: dict[str, Any] = {"type": kind, "status": value}
    if probe:
        new["lastProbeTime"] = None
    if heartbeat is not None:
        new["lastHeartbeatTime"] = heartbeat
    new["lastTransitionTime"] = (current or {}).get("lastTransitionTime") or stamp
    if current is None or current.get("status") != value:
        new["lastTransitionTime"] = stamp
    if reason is not None:
        new["reason"] = reason
    if message is not None:
        new["message"] = message
    if current is None:
        conditions.append(new)
    else:
        current.clear()
        current.update(new)


def parse_time(stamp: str | None) -> float | None:
    """Seconds since the epoch of an RFC 3339 timestamp, None when absent or malformed."""
    if not stamp:
        return None
    try:
        return datetime.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def pod_active(pod: Obj) -> bool:
    """Not terminated and not being deleted."""
    return (pod.get("status", {}).get("phase") not in ("Succeeded", "Failed")
            and not pod["metadata"].get("deletionTimestamp"))


def pod_running(pod: Obj) -> bool:
    return pod.get("status", {}).get("phase") == "Running" and not pod["metadata"].get("deletionTimestamp")


def pod_ready(pod: Obj) -> bool:
    """Running with condition Ready=True."""
    return pod_running(pod) and condition_true(pod, "Ready")


def pod_available(pod: Obj, min_ready_seconds: int = 0) -> bool:
    """Ready for at least ``min_ready_seconds`` (what Deployments and DaemonSets count)."""
    if not pod_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = parse_time((condition(pod, "Ready") or {}).get("lastTransitionTime"))
    return since is not None and since + min_ready_seconds <= time.time()


def pod_cni(pod: Obj) -> str | None:
    """The CNI that wired the pod: 'aws-cni', 'cilium', or None (host network, not wired yet)."""
    return (pod["metadata"].get("annotations") or {}).get(CNI_ANNOTATION)


def agent_cni(pod: Obj) -> str | None:
    """Which CNI this pod is the node agent of: aws-node DaemonSet pods and ``k8s-app=cilium`` pods."""
    labels = labels_of(pod)
    if labels.get("k8s-app") == "cilium":
        return CILIUM
    ref = controller_ref(pod)
    if pod["metadata"].get("namespace") == "kube-system" and (
            labels.get("k8s-app") == "aws-node"
            or (ref is not None and ref.get("kind") == "DaemonSet" and ref.get("name") == "aws-node")):
        return AWS_CNI
    return None


def ready_agents(store: Store, node_name: str) -> dict[str, Obj]:
    """The CNI agents Running and Ready on a node, by CNI."""
    found: dict[str, Obj] = {}
    for pod in store.list(PODS, node_name=node_name)[0]:
        cni = agent_cni(pod)
        if cni and pod_ready(pod):
            found.setdefault(cni, pod)
    return found


def node_ip(node: Obj) -> str:
    for a in node.get("status", {}).get("addresses") or []:
        if a.get("type") == "InternalIP":
            return str(a.get("address", ""))
    return ""


def node_ready(node: Obj) -> bool:
    return condition_true(node, "Ready")


def node_taints(node: Obj) -> list[dict[str, Any]]:
    return list(node.get("spec", {}).get("taints") or [])


def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def safe_encode(value: int) -> str:
    """Kubernetes' ``rand.SafeEncodeString`` of a hash's decimal digits (pod-template-hash style)."""
    return "".join(SAFE_ALPHABET[ord(ch) % len(SAFE_ALPHABET)] for ch in str(value))


def _qos_class(spec: dict[str, Any]) -> str:
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    resources = [c.get("resources") or {} for c in containers]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    for r in resources:
        limits, requests = r.get("limits") or {}, r.get("requests") or {}
        for kind in ("cpu", "memory"):
            if kind not in limits or requests.get(kind, limits[kind]) != limits[kind]:
                return "Burstable"
    return "Guaranteed"


def pod_from_template(template: Obj, owner: Obj, extra_labels: dict[str, str]) -> Obj:
    """A new pod for a controller: the template, the API server's defaults, an owner reference."""
    meta = template.get("metadata") or {}
    spec = copy.deepcopy(template.get("spec") or {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("securityContext", {})
    account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    spec["serviceAccountName"] = spec["serviceAccount"] = account
    pod_meta: dict[str, Any] = {"namespace": owner["metadata"].get("namespace"),
                                "labels": {**(meta.get("labels") or {}), **extra_labels},
                                "ownerReferences": [owner_ref(owner)]}
    if meta.get("annotations"):
        pod_meta["annotations"] = dict(meta["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": spec,
            "status": {"phase": "Pending", "qosClass": _qos_class(spec)}}


def template_hash(template: Obj) -> str:
    """A stable short hash of a pod template (``pod-template-hash`` / ``controller-revision-hash``)."""
    return safe_encode(fnv32a(json.dumps(template, sort_keys=True, separators=(",", ":")).encode()))


def scaled_int_or_percent(value: Any, total: int, *, round_up: bool) -> int:
    """An IntOrString resolved against ``total`` (Kubernetes' GetScaledValueFromIntOrPercent)."""
    if value is None:
        return 0
    if isinstance(value, str):
        if value.endswith("%"):
            scaled = int(value[:-1]) * total / 100
            return math.ceil(scaled) if round_up else math.floor(scaled)
        return int(value)
    return int(value)
