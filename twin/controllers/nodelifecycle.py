"""Node readiness (the kubelet's Ready condition) and the node lifecycle controller's NoSchedule taints.

Rules:
- A node is Ready once a CNI agent pod (aws-node or Cilium) has been Running and Ready on it for
  ``agent_ready_s``; otherwise NotReady with the kubelet's NetworkPluginNotReady message. (An agent
  blocked by ``faults.agent_never_ready`` never turns Ready, so neither does its node.)
- Each wait for Ready is recorded as a delay (``twin.delays``: ``node-ready``, ``agent_ready_s``).
- ``lastTransitionTime`` moves only when the status changes; ``lastHeartbeatTime`` on a change and at
  least every ``HEARTBEAT_S``.
- Taints by condition: ``node.kubernetes.io/not-ready:NoSchedule`` while not Ready,
  ``node.kubernetes.io/unschedulable:NoSchedule`` while cordoned; removed when that stops.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from twin.controllers.base import (
    NOT_READY_TAINT,
    UNSCHEDULABLE_TAINT,
    Controller,
    condition,
    parse_time,
    ready_agents,
)
from twin.resources import NODES, PODS
from twin.store import Obj, now_iso

HEARTBEAT_S = 60.0
READY = ("True", "KubeletReady", "kubelet is posting ready status")
NOT_READY = ("False", "KubeletNotReady",
             "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady "
             "message:Network plugin returns error: cni plugin not initialized")


def _ready_condition(node: Obj, *, ready: bool) -> None:
    set_ready_condition(node, ready)


def set_ready_condition(node: Obj, ready: bool) -> None:
    """Update the Ready condition in place, keeping timestamps unless something changed."""
    value, reason, message = READY if ready else NOT_READY
    status = node.setdefault("status", {})
    conditions = status.setdefault("conditions", [])
    current = condition(node, "Ready")
    stamp = now_iso()
    if current is not None and (current.get("status"), current.get("reason"), current.get("message")) == (
            value, reason, message):
        beat = parse_time(current.get("lastHeartbeatTime"))
        if beat is not None and time.time() - beat < HEARTBEAT_S:
            return
        current["lastHeartbeatTime"] = stamp
        return
    new = {"type": "Ready", "status": value, "lastHeartbeatTime": stamp,
           "lastTransitionTime": stamp if current is None or current.get("status") != value
           else current.get("lastTransitionTime", stamp),
           "reason": reason, "message": message}
    if current is None:
        conditions.append(new)
    else:
        current.clear()
        current.update(new)


def set_condition_taints(node: Obj, ready: bool) -> None:
    """Add or remove the not-ready and unschedulable NoSchedule taints in place."""
    spec = node.setdefault("spec", {})
    taints: list[dict[str, Any]] = list(spec.get("taints") or [])
    wanted = {NOT_READY_TAINT: not ready, UNSCHEDULABLE_TAINT: bool(spec.get("unschedulable"))}
    for key, present in wanted.items():
        has = any(t.get("key") == key and t.get("effect") == "NoSchedule" for t in taints)
        if present and not has:
            taint: dict[str, Any] = {"key": key, "effect": "NoSchedule"}
            if key == UNSCHEDULABLE_TAINT:
                taint["timeAdded"] = now_iso()
            taints.append(taint)
        elif not present and has:
            taints = [t for t in taints if not (t.get("key") == key and t.get("effect") == "NoSchedule")]
    if taints:
        spec["taints"] = taints
    else:
        spec.pop("taints", None)


class NodeLifecycle(Controller):
    """Turns nodes Ready when a CNI agent runs there, and keeps the condition taints in step."""

    name = "nodelifecycle"
    watches = (NODES, PODS)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._agent_since: dict[str, float] = {}  # node name -> monotonic time an agent was seen Ready
        self._ready_recorded: set[str] = set()  # nodes whose wait for Ready is recorded (twin.delays)

    def reconcile(self) -> None:
        now = time.monotonic()
        seen = set()
        for node in self.store.iter_all(NODES):
            name = node["metadata"]["name"]
            seen.add(name)
            ready = False
            if ready_agents(self.store, name):
                since = self._agent_since.setdefault(name, now)
                wait = since + self.timing.agent_ready_s - now
                ready = wait <= 0
                if not ready:
                    self.wake_in(wait)
                elif name not in self._ready_recorded:
                    self._ready_recorded.add(name)
                    self.store.delays.record("node-ready", f"node {name}", started=since,
                                             duration_s=self.timing.agent_ready_s,
                                             waiting_on=f"a Ready CNI agent on node {name}")
            else:
                self._agent_since.pop(name, None)
                self._ready_recorded.discard(name)
            self.patch(NODES, None, name, functools.partial(_ready_condition, ready=ready), status=True)
            self.patch(NODES, None, name, functools.partial(set_condition_taints, ready=ready))
        for name in set(self._agent_since) - seen:
            del self._agent_since[name]
        self._ready_recorded &= seen
