"""Cilium's control plane stand-in: what the cilium-operator (and the agents' CRD writes) do.

Rules:
- Agent side, always: a ``CiliumNode`` (named after the node, owned by it) for every node where a
  Cilium agent pod runs, and a ``CiliumEndpoint`` (named after the pod, owned by it) for every Running
  pod the Cilium CNI wired, with ``status.networking.addressing[0].ipv4`` and ``status.networking.node``
  (the host IP). Endpoints whose pod is gone, replaced or not Cilium's are deleted.
- Operator side, only while an operator pod (``io.cilium/app=operator`` or ``name=cilium-operator``)
  is Running:
  - removes every ``node.cilium.io/agent-not-ready`` taint (any effect) from a node once a Cilium agent
    there has been Ready for ``taint_removal_s``, and sets ``NetworkUnavailable=False`` (CiliumIsUp);
  - deletes ``CiliumNode`` objects whose node is gone;
  - the unmanaged-pod watcher: ConfigMap ``kube-system/cilium-config`` key
    ``unmanaged-pod-watcher-interval`` (seconds, 0 = off; absent = the operator's default 15). Every
    interval it deletes the pods that are not host-network, have no CiliumEndpoint, have been Running
    longer than the interval, match ``pod-restart-selector`` (absent = every pod, as the runbook
    describes the operator), and are owned by a controller (which recreates them).
- The interval is in the twin's time: multiplied by the timing's scale (``resync_s`` / its default).
"""

from __future__ import annotations

import re
import time
from typing import Any

from twin.config import Timing
from twin.controllers.base import (
    AGENT_NOT_READY_TAINT,
    CILIUM,
    Controller,
    controller_ref,
    fnv32a,
    labels_of,
    node_ip,
    pod_cni,
    pod_ready,
    pod_running,
    set_condition,
)
from twin.resources import CILIUMENDPOINTS, CILIUMNODES, CONFIGMAPS, NODES, PODS
from twin.selectors import SelectorError, labels_match, parse_label_selector
from twin.store import ApiError, Obj, now_iso

CONFIG_NAMESPACE, CONFIG_NAME = "kube-system", "cilium-config"
INTERVAL_KEY = "unmanaged-pod-watcher-interval"
SELECTOR_KEY = "pod-restart-selector"
DEFAULT_INTERVAL_S = 15.0
_DURATION = re.compile(r"^\s*([0-9.]+)\s*(ms|s|m|h)?\s*$")


def is_operator_pod(pod: Obj) -> bool:
    labels = labels_of(pod)
    return labels.get("io.cilium/app") == "operator" or labels.get("name") == "cilium-operator"


def is_agent_pod(pod: Obj) -> bool:
    return labels_of(pod).get("k8s-app") == "cilium"


def parse_interval(value: str | None) -> float:
    """Seconds from the config value ("15", "15s", "1m"); the default when absent, 0 when unreadable."""
    if value is None:
        return DEFAULT_INTERVAL_S
    m = _DURATION.match(str(value))
    if not m:
        return 0.0
    unit = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[m.group(2) or "s"]
    return float(m.group(1)) * unit


def _instance_id(node: Obj) -> str:
    return (node.get("spec", {}).get("providerID") or "").rsplit("/", 1)[-1]


def cilium_node(node: Obj) -> Obj:
    labels = labels_of(node)
    instance = _instance_id(node)
    return {
        "apiVersion": "cilium.io/v2", "kind": "CiliumNode",
        "metadata": {"name": node["metadata"]["name"], "labels": dict(labels),
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node["metadata"]["name"],
                                          "uid": node["metadata"]["uid"]}]},
        "spec": {
            "addresses": [{"type": "InternalIP", "ip": node_ip(node)}],
            "instance-id": instance,
            "eni": {"instance-id": instance,
                    "instance-type": labels.get("node.kubernetes.io/instance-type", ""),
                    "availability-zone": labels.get("topology.kubernetes.io/zone", ""),
                    "first-interface-index": 0, "use-primary-address": False},
            "ipam": {"pool": {}},
        },
        "status": {"eni": {"enis": {}}, "ipam": {"operator-status": {}}},
    }


def cilium_endpoint(pod: Obj) -> Obj:
    meta, status = pod["metadata"], pod.get("status") or {}
    identity_labels = sorted(f"k8s:{k}={v}" for k, v in labels_of(pod).items() if k != "pod-template-hash")
    identity_labels.append(f"k8s:io.kubernetes.pod.namespace={meta['namespace']}")
    identity = 10000 + fnv32a("|".join(identity_labels).encode()) % 50000
    return {
        "apiVersion": "cilium.io/v2", "kind": "CiliumEndpoint",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": meta["name"],
                                          "uid": meta["uid"], "blockOwnerDeletion": True}]},
        "status": {
            "id": 1 + fnv32a(meta["uid"].encode()) % 4000,
            "identity": {"id": identity, "labels": identity_labels},
            "networking": {"addressing": [{"ipv4": status.get("podIP", "")}], "node": status.get("hostIP", "")},
            "state": "ready",
            "encryption": {},
            "external-identifiers": {"k8s-namespace": meta["namespace"], "k8s-pod-name": meta["name"],
                                     "pod-name": f"{meta['namespace']}/{meta['name']}"},
        },
    }


class CiliumOperator(Controller):
    """Cilium's CRDs, the agent-not-ready taint removal, and the unmanaged-pod watcher."""

    name = "cilium-operator"
    watches = (PODS, NODES, CONFIGMAPS, CILIUMENDPOINTS, CILIUMNODES)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._agent_ready_since: dict[str, float] = {}  # node name -> monotonic time
        self._running_since: dict[str, float] = {}  # pod uid -> monotonic time first seen Running
        self._last_watch: float | None = None  # monotonic time of the last unmanaged-pod pass

    @property
    def scale(self) -> float:
        return self.timing.resync_s / Timing().resync_s

    def reconcile(self) -> None:
        now = time.monotonic()
        pods = list(self.store.iter_all(PODS))
        nodes = {n["metadata"]["name"]: n for n in self.store.iter_all(NODES)}
        running: set[str] = set()
        agent_nodes: set[str] = set()
        ready_nodes: set[str] = set()
        operator_up = False
        for pod in pods:
            if not pod_running(pod):
                continue
            running.add(pod["metadata"]["uid"])
            self._running_since.setdefault(pod["metadata"]["uid"], now)
            operator_up = operator_up or is_operator_pod(pod)
            if is_agent_pod(pod) and pod["spec"].get("nodeName"):
                agent_nodes.add(pod["spec"]["nodeName"])
                if pod_ready(pod):
                    ready_nodes.add(pod["spec"]["nodeName"])
        for uid in set(self._running_since) - running:
            del self._running_since[uid]
        for name in list(self._agent_ready_since):
            if name not in ready_nodes:
                del self._agent_ready_since[name]
        for name in ready_nodes:
            self._agent_ready_since.setdefault(name, now)

        self._sync_ciliumnodes(nodes, agent_nodes, operator_up)
        self._sync_endpoints(pods)
        if operator_up:
            self._remove_taints(nodes, now)
            self._watch_unmanaged(pods, now)
        else:
            self._last_watch = None

    # ---- CRDs ----------------------------------------------------------------------------------

    def _sync_ciliumnodes(self, nodes: dict[str, Obj], agent_nodes: set[str], operator_up: bool) -> None:
        for name in sorted(agent_nodes):
            if name in nodes and self.store.get(CILIUMNODES, None, name) is None:
                try:
                    self.store.create(CILIUMNODES, cilium_node(nodes[name]))
                except ApiError as err:
                    if err.code != 409:
                        raise
        if operator_up:
            for cn in self.store.iter_all(CILIUMNODES):
                if cn["metadata"]["name"] not in nodes:
                    self.delete(CILIUMNODES, cn)

    def _sync_endpoints(self, pods: list[Obj]) -> None:
        wired = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in pods
                 if pod_running(p) and pod_cni(p) == CILIUM and (p.get("status") or {}).get("podIP")}
        existing = {(c["metadata"]["namespace"], c["metadata"]["name"]): c
                    for c in self.store.iter_all(CILIUMENDPOINTS)}
        for key, cep in existing.items():
            pod = wired.get(key)
            owner = (cep["metadata"].get("ownerReferences") or [{}])[0].get("uid")
            if pod is None or owner != pod["metadata"]["uid"]:
                if self.delete(CILIUMENDPOINTS, cep):
                    existing[key] = {}
        for key, pod in wired.items():
            if existing.get(key):
                continue
            try:
                self.store.create(CILIUMENDPOINTS, cilium_endpoint(pod))
            except ApiError as err:
                if err.code not in (404, 409):
                    raise

    # ---- operator ------------------------------------------------------------------------------

    def _remove_taints(self, nodes: dict[str, Obj], now: float) -> None:
        for name, node in nodes.items():
            since = self._agent_ready_since.get(name)
            if since is None:
                continue
            wait = since + self.timing.taint_removal_s - now
            if wait > 0:
                self.wake_in(wait)
                continue
            if any(t.get("key") == AGENT_NOT_READY_TAINT for t in node.get("spec", {}).get("taints") or []):
                def untaint(n: Obj) -> None:
                    kept = [t for t in n["spec"].get("taints") or [] if t.get("key") != AGENT_NOT_READY_TAINT]
                    if kept:
                        n["spec"]["taints"] = kept
                    else:
                        n["spec"].pop("taints", None)
                if self.patch(NODES, None, name, untaint) is not None:
                    self.store.delays.record("taint-removal", f"node {name}", started=since,
                                             duration_s=self.timing.taint_removal_s,
                                             waiting_on=f"a Ready Cilium agent on node {name}")

            def network_up(n: Obj) -> None:
                status = n.setdefault("status", {})
                current = next((c for c in status.get("conditions") or []
                                if c.get("type") == "NetworkUnavailable"), None)
                if current is not None and current.get("reason") == "CiliumIsUp":
                    return
                set_condition(status, "NetworkUnavailable", "False", "CiliumIsUp",
                              "Cilium is running on this node", heartbeat=now_iso())
            self.patch(NODES, None, name, network_up, status=True)

    def _config(self) -> dict[str, str]:
        cm = self.store.get(CONFIGMAPS, CONFIG_NAMESPACE, CONFIG_NAME)
        return dict((cm or {}).get("data") or {})

    def _watch_unmanaged(self, pods: list[Obj], now: float) -> None:
        config = self._config()
        interval = parse_interval(config.get(INTERVAL_KEY)) * self.scale
        if interval <= 0:
            self._last_watch = None
            return
        if self._last_watch is None:
            self._last_watch = now
        due = self._last_watch + interval - now
        if due > 0:
            self.wake_in(due)
            return
        self._last_watch = now
        self.wake_in(interval)
        try:
            selector = parse_label_selector(config.get(SELECTOR_KEY) or "")
        except SelectorError:
            self.log.warning("cilium-config %s does not parse; restarting nothing", SELECTOR_KEY)
            return
        managed = {(c["metadata"]["namespace"], c["metadata"]["name"])
                   for c in self.store.iter_all(CILIUMENDPOINTS)}
        for pod in pods:
            meta = pod["metadata"]
            if (not pod_running(pod) or pod["spec"].get("hostNetwork")
                    or (meta["namespace"], meta["name"]) in managed
                    or controller_ref(pod) is None
                    or not labels_match(selector, labels_of(pod))):
                continue
            since = self._running_since.get(meta["uid"], now)
            if now - since > interval:
                self.log.info("restarting unmanaged pod %s/%s", meta["namespace"], meta["name"])
                self.delete(PODS, pod)
