"""The kubelets: pod lifecycle on every node, and which CNI wires each pod.

Rules:
- A pod bound to a node that does not exist is deleted (what pod GC does).
- A host-network pod, and a CNI agent pod (aws-node, ``k8s-app=cilium``: host network in their real
  manifests), runs ``pod_start_s`` after the kubelet first sees it, with the node's IP.
- Any other pod is wired by the CNI of the node's first CNI config file (``twin.controllers.cni_config``
  keeps each node's ``/etc/cni/net.d``: 05-cilium -> Cilium, 10-aws -> aws-cni), and only once that
  CNI's agent pod is Running and Ready on the node. Until then (no config file, or its agent not
  Ready, e.g. a ``05-cilium.conflist`` left behind by an uninstalled Cilium) the pod stays Pending, its
  containers waiting in ``ContainerCreating``. Once wired it runs ``pod_start_s`` later: ``podIP``
  from the node's range (node 192.168.A.B -> 10.A.B.x), annotation ``twin.cilium-migration.io/cni``
  naming the CNI, all conditions True, container statuses filled in.
- Each pass first brings the config directories up to date (``CniConfigDirs.sync``), then starts pods.
- Each start is recorded as a delay (``twin.delays``: ``agent-start`` or ``pod-start``, ``pod_start_s``
  from the moment the pod could start).
- A pod's network never changes after wiring: pods keep their CNI until they are replaced.
- A workload pod (not a CNI agent) whose containers have a ``readinessProbe`` with ``initialDelaySeconds``
  runs at once but turns Ready only that many seconds (the largest of its containers', unscaled: the
  pod's own figure) after it started, as the kubelet does not probe before then.
- A CNI agent pod on a node in ``faults.agent_never_ready`` (by node or node-group name) runs but never
  turns Ready (its readiness probe fails); it turns Ready once the fault is lifted.
"""

from __future__ import annotations

import hashlib
import time
from datetime import datetime
from typing import Any

from twin.controllers.base import (
    CNI_ANNOTATION,
    NODEGROUP_LABEL,
    Controller,
    agent_cni,
    condition_true,
    labels_of,
    node_ip,
    pod_active,
    ready_agents,
    set_condition,
)
from twin.controllers.cni_config import CniConfigDirs
from twin.resources import CONFIGMAPS, NODES, PODS
from twin.store import Obj, now_iso


def pod_range(node: Obj) -> str:
    """The node's pod address prefix: node 192.168.A.B hands out 10.A.B.x."""
    octets = (node_ip(node) or "0.0.0.0").split(".")
    return f"10.{int(octets[2]) % 256}.{int(octets[3]) % 256}."


def _image_id(image: str) -> str:
    repo = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    return f"{repo}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"


def _container_id(pod: Obj, name: str) -> str:
    return "containerd://" + hashlib.sha256(f"{pod['metadata'].get('uid')}/{name}".encode()).hexdigest()


def _unready_message(pod: Obj) -> str:
    names = " ".join(c.get("name", "") for c in pod["spec"].get("containers") or [])
    return f"containers with unready status: [{names}]"


class Kubelet(Controller):
    """Starts bound pods once their node can wire them, and records the CNI that did."""

    name = "kubelet"
    watches = (PODS, NODES, CONFIGMAPS)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._startable: dict[str, float] = {}  # pod uid -> monotonic time it could start
        self._cursor: dict[str, int] = {}  # node name -> last host number handed out
        self.cni_dirs = CniConfigDirs()  # every node's /etc/cni/net.d

    def reconcile(self) -> None:
        nodes = {n["metadata"]["name"]: n for n in self.store.iter_all(NODES)}
        pods = list(self.store.iter_all(PODS))
        self.cni_dirs.sync(self.store, nodes, pods)
        now = time.monotonic()
        live: set[str] = set()
        agents: dict[str, dict[str, Obj]] = {}
        for pod in pods:
            node_name = pod.get("spec", {}).get("nodeName")
            if not node_name or not pod_active(pod):
                continue
            node = nodes.get(node_name)
            if node is None:
                self.delete(PODS, pod)
                continue
            uid = pod["metadata"]["uid"]
            agent = agent_cni(pod)
            if pod.get("status", {}).get("phase") == "Running":
                if agent is not None:
                    self._follow_probe(pod, node)
                elif not condition_true(pod, "Ready"):
                    self._follow_initial_delay(pod)
                continue
            live.add(uid)
            cni: str | None = None
            if not (pod["spec"].get("hostNetwork") or agent is not None):
                if node_name not in agents:
                    agents[node_name] = ready_agents(self.store, node_name)
                cni = self.cni_dirs.cni(node_name)
                if cni is None or cni not in agents[node_name]:
                    self._startable.pop(uid, None)
                    self._mark_creating(pod, node)
                    continue
            since = self._startable.setdefault(uid, now)
            wait = since + self.timing.pod_start_s - now
            if wait > 0:
                self._mark_creating(pod, node)
                self.wake_in(wait)
                continue
            delayed = agent is None and readiness_delay_s(pod) > 0
            if self._start(pod, node, cni, ready=not delayed and (agent is None or not self._blocked(node))):
                if delayed:
                    self.wake_in(readiness_delay_s(pod))
                meta = pod["metadata"]
                self.store.delays.record(
                    "agent-start" if agent is not None else "pod-start", f"pod {meta['namespace']}/{meta['name']}",
                    started=since, duration_s=self.timing.pod_start_s,
                    waiting_on=f"node {node_name}" + (f" wired by {cni}" if cni else ""))
        for uid in set(self._startable) - live:
            del self._startable[uid]

    def _blocked(self, node: Obj) -> bool:
        return self.faults.agent_blocked(node["metadata"]["name"], labels_of(node).get(NODEGROUP_LABEL))

    # ---- status writers ------------------------------------------------------------------------

    def _mark_creating(self, pod: Obj, node: Obj) -> None:
        host_ip = node_ip(node)

        def change(p: Obj) -> None:
            status = p.setdefault("status", {})
            status["phase"] = "Pending"
            status["hostIP"] = host_ip
            status["hostIPs"] = [{"ip": host_ip}]
            status.setdefault("startTime", now_iso())
            set_condition(status, "PodReadyToStartContainers", "False")
            set_condition(status, "Initialized", "True")
            set_condition(status, "Ready", "False", "ContainersNotReady", _unready_message(p))
            set_condition(status, "ContainersReady", "False", "ContainersNotReady", _unready_message(p))
            set_condition(status, "PodScheduled", "True")
            status["containerStatuses"] = [
                {"name": c.get("name", ""), "image": c.get("image", ""), "imageID": "",
                 "ready": False, "restartCount": 0, "started": False,
                 "state": {"waiting": {"reason": "ContainerCreating"}}, "lastState": {}}
                for c in p["spec"].get("containers") or []]

        self.patch(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"], change, status=True)

    def _start(self, pod: Obj, node: Obj, cni: str | None, *, ready: bool) -> bool:
        """Run the pod; False when it is gone."""
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        host_ip = node_ip(node)
        pod_ip = host_ip if cni is None else self._allocate(node)
        if cni is not None:
            def annotate(p: Obj) -> None:
                p["metadata"].setdefault("annotations", {})[CNI_ANNOTATION] = cni
            if self.patch(PODS, namespace, name, annotate) is None:
                return False

        def change(p: Obj) -> None:
            status = p.setdefault("status", {})
            started = now_iso()
            status["phase"] = "Running"
            status["hostIP"], status["hostIPs"] = host_ip, [{"ip": host_ip}]
            status["podIP"], status["podIPs"] = pod_ip, [{"ip": pod_ip}]
            status.setdefault("startTime", started)
            status.setdefault("qosClass", "BestEffort")
            set_condition(status, "PodReadyToStartContainers", "True")
            set_condition(status, "Initialized", "True")
            self._set_readiness(p, ready)
            set_condition(status, "PodScheduled", "True")
            status["containerStatuses"] = [
                {"name": c.get("name", ""), "image": c.get("image", ""),
                 "imageID": _image_id(c.get("image", "")), "containerID": _container_id(p, c.get("name", "")),
                 "ready": ready, "restartCount": 0, "started": True,
                 "state": {"running": {"startedAt": started}}, "lastState": {}}
                for c in p["spec"].get("containers") or []]
            if p["spec"].get("initContainers"):
                status["initContainerStatuses"] = [
                    {"name": c.get("name", ""), "image": c.get("image", ""),
                     "imageID": _image_id(c.get("image", "")),
                     "containerID": _container_id(p, c.get("name", "")),
                     "ready": True, "restartCount": 0, "started": False,
                     "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                                              "startedAt": status["startTime"], "finishedAt": started}},
                     "lastState": {}}
                    for c in p["spec"]["initContainers"]]

        return self.patch(PODS, namespace, name, change, status=True) is not None

    def _set_readiness(self, p: Obj, ready: bool) -> None:
        status = p["status"]
        if ready:
            set_condition(status, "Ready", "True")
            set_condition(status, "ContainersReady", "True")
        else:
            set_condition(status, "Ready", "False", "ContainersNotReady", _unready_message(p))
            set_condition(status, "ContainersReady", "False", "ContainersNotReady", _unready_message(p))
        for cs in status.get("containerStatuses") or []:
            cs["ready"] = ready

    def _follow_probe(self, pod: Obj, node: Obj) -> None:
        """A running CNI agent is Ready exactly when its node is not blocked by the fault."""
        ready = not self._blocked(node)
        if condition_true(pod, "Ready") == ready:
            return
        self.patch(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"],
                   lambda p: self._set_readiness(p, ready), status=True)

    def _follow_initial_delay(self, pod: Obj) -> None:
        """A running workload pod turns Ready once its readiness probe's initial delay has passed."""
        started = _started_at(pod)
        if started is None:
            return
        left = started + readiness_delay_s(pod) - time.time()
        if left > 0:
            self.wake_in(left)
            return
        self.patch(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"],
                   lambda p: self._set_readiness(p, True), status=True)

    def _allocate(self, node: Obj) -> str:
        name = node["metadata"]["name"]
        prefix = pod_range(node)
        used = {(p.get("status") or {}).get("podIP") for p in self.store.list(PODS, node_name=name)[0]}
        cursor = self._cursor.get(name, 1)
        for step in range(1, 254):
            host = (cursor - 2 + step) % 253 + 2  # 2..254, after the cursor
            if prefix + str(host) not in used:
                self._cursor[name] = host
                return prefix + str(host)
        raise RuntimeError(f"node {name} has no free pod address")


def readiness_delay_s(pod: Obj) -> float:
    """The longest ``readinessProbe.initialDelaySeconds`` of the pod's containers (0 without one)."""
    return float(max((int((c.get("readinessProbe") or {}).get("initialDelaySeconds") or 0)
                      for c in (pod.get("spec") or {}).get("containers") or []), default=0))


def _started_at(pod: Obj) -> float | None:
    """When the pod's first container started running (epoch seconds), from its status."""
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        at = ((cs.get("state") or {}).get("running") or {}).get("startedAt")
        if at:
            return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()
    return None
