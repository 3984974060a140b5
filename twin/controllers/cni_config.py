"""Every node's CNI configuration directory (``/etc/cni/net.d``), as the CNI agents leave it.

Rules (Cilium 1.16 and the AWS VPC CNI):
- aws-node writes ``10-aws.conflist`` once per pod, when that pod is first Running and Ready; it never
  removes it.
- A Cilium agent pod (``k8s-app=cilium``) Running and Ready writes ``05-cilium.conflist``. With
  ``cni-exclusive`` of ``cilium-config`` (in the pod's namespace) "true" or unset, it renames every
  other config file (``.conf``, ``.conflist``, ``.json``) to ``<name>.cilium_bak``. It does both on
  every pass (the agent watches the directory).
- The agent's preStop hook (``/cni-uninstall.sh``) runs when a Cilium agent pod that was Running is
  deleted while its node still exists. With ``cni-uninstall`` "true" it deletes
  ``05-cilium.conflist`` and renames every ``*.cilium_bak`` back; otherwise it leaves the directory
  alone. The value it reads is the one last seen in ``cilium-config`` while the pod ran (a mounted
  ConfigMap keeps its last content when the ConfigMap is deleted).
- The container runtime uses the config file that sorts first by name: ``05-cilium.conflist`` is
  Cilium, ``10-aws.conflist`` aws-cni; any other file, or none, is no CNI the twin can wire with.
- A node removed from the store, or replaced by a new one of the same name, loses its directory.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from twin.controllers.base import AWS_CNI, CILIUM, agent_cni, pod_ready, pod_running
from twin.resources import CONFIGMAPS
from twin.store import Obj, Store

CILIUM_CONF, AWS_CONF = "05-cilium.conflist", "10-aws.conflist"
BACKUP_SUFFIX = ".cilium_bak"
CONFIG_SUFFIXES = (".conf", ".conflist", ".json")
CONFIG_MAP = "cilium-config"
CNI_BY_FILE = {CILIUM_CONF: CILIUM, AWS_CONF: AWS_CNI}


def is_config(name: str) -> bool:
    """A file the container runtime loads (``.cilium_bak`` backups are not)."""
    return name.endswith(CONFIG_SUFFIXES)


@dataclass
class _CiliumAgent:
    node: str
    uninstall: str | None  # cni-uninstall as last seen in the pod's mounted cilium-config


class CniConfigDirs:
    """The directories, kept up to date by ``sync`` (one pass over the store); thread-safe reads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dirs: dict[str, set[str]] = {}  # node name -> file names
        self._node_uids: dict[str, str] = {}  # node name -> uid its directory belongs to
        self._aws_written: set[str] = set()  # uids of aws-node pods that wrote their file
        self._cilium: dict[str, _CiliumAgent] = {}  # uid of a Cilium agent pod seen Running -> memo

    # ---- reads ---------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, list[str]]:
        """Node name -> sorted file names (backups included), for every node of the last pass."""
        with self._lock:
            return {node: sorted(files) for node, files in sorted(self._dirs.items())}

    def first_config(self, node: str) -> str | None:
        """The config file the node's container runtime uses: the first config file by name."""
        with self._lock:
            return min((f for f in self._dirs.get(node, ()) if is_config(f)), default=None)

    def cni(self, node: str) -> str | None:
        """The CNI the node's runtime wires new pods with (by its first config file), or None."""
        first = self.first_config(node)
        return CNI_BY_FILE.get(first) if first is not None else None

    # ---- one pass --------------------------------------------------------------------------------

    def sync(self, store: Store, nodes: dict[str, Obj], pods: list[Obj]) -> None:
        """Apply the rules to the current nodes and pods (preStop hooks first, then the agents)."""
        with self._lock:
            self._sync_nodes(nodes)
            present = {p["metadata"]["uid"] for p in pods}
            self._stop_gone_cilium_agents(present)
            self._aws_written &= present
            for pod in pods:
                node = pod.get("spec", {}).get("nodeName")
                cni = agent_cni(pod)
                if node not in self._dirs or cni is None:
                    continue
                uid = pod["metadata"]["uid"]
                if cni == CILIUM and pod_running(pod):
                    data = _cilium_config(store, pod)
                    known = self._cilium.get(uid)
                    uninstall = data.get("cni-uninstall") if data is not None else (
                        known.uninstall if known is not None else None)
                    self._cilium[uid] = _CiliumAgent(node, uninstall)
                if not pod_ready(pod):
                    continue
                if cni == AWS_CNI and uid not in self._aws_written:
                    self._aws_written.add(uid)
                    self._dirs[node].add(AWS_CONF)
                elif cni == CILIUM:
                    data = _cilium_config(store, pod) or {}
                    self._write_cilium(node, exclusive=data.get("cni-exclusive", "true") == "true")

    def _sync_nodes(self, nodes: dict[str, Obj]) -> None:
        for name in list(self._dirs):
            if name not in nodes or nodes[name]["metadata"].get("uid") != self._node_uids.get(name):
                del self._dirs[name]
                self._node_uids.pop(name, None)
        for name, node in nodes.items():
            if name not in self._dirs:
                self._dirs[name] = set()
                self._node_uids[name] = node["metadata"].get("uid", "")

    def _stop_gone_cilium_agents(self, present: set[str]) -> None:
        for uid in set(self._cilium) - present:
            agent = self._cilium.pop(uid)
            files = self._dirs.get(agent.node)
            if files is None or agent.uninstall != "true":
                continue
            files.discard(CILIUM_CONF)
            for name in [f for f in files if f.endswith(BACKUP_SUFFIX)]:
                files.discard(name)
                files.add(name.removesuffix(BACKUP_SUFFIX))

    def _write_cilium(self, node: str, *, exclusive: bool) -> None:
        files = self._dirs[node]
        files.add(CILIUM_CONF)
        if exclusive:
            for name in [f for f in files if is_config(f) and f != CILIUM_CONF]:
                files.discard(name)
                files.add(name + BACKUP_SUFFIX)


def _cilium_config(store: Store, pod: Obj) -> dict[str, str] | None:
    """The data of ``cilium-config`` in the pod's namespace; None when there is no such ConfigMap."""
    cm = store.get(CONFIGMAPS, pod["metadata"].get("namespace"), CONFIG_MAP)
    return None if cm is None else dict(cm.get("data") or {})
