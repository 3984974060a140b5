"""Node-group controller: the EC2 Auto Scaling group and kubelet registration behind each EKS node group.

Rules:
- It polls moto's in-process state (``twin.eks.read_nodegroups``, read-only) and makes each group's Node
  objects follow ``scalingConfig.desiredSize``.
- Growing: a new Node registers ``node_provision_s + faults.slow_provisioning_s`` after the growth was
  seen, NotReady (no CNI yet), with the group's labels and taints (EKS effects mapped to Kubernetes').
- Shrinking: pending launches are cancelled first; then the newest nodes are drained: cordoned, their
  pods that DaemonSets do not own deleted (their controllers recreate them elsewhere), and after
  ``node_drain_s`` the Node and whatever pods are left on it are deleted (what pod GC does).
- Nodes of a group that no longer exists are drained as if its desired size were 0.
- A node whose EC2 instance was terminated (``ec2:TerminateInstances``, ``twin.ec2_api``: EC2's state,
  polled like moto's) is not drained: nothing is cordoned or evicted, and ``node_drain_s`` after the
  termination the Node and the pods left on it are deleted (the cloud controller and pod GC), of any
  group or none. Until then it stays as it was (the twin does not model the kubelet going silent). From
  the termination on it no longer counts towards its group's size, so the Auto Scaling group launches a
  replacement: a new node (new name, IP and instance id; an empty CNI directory) registers
  ``node_provision_s + faults.slow_provisioning_s`` after the termination, as on growth. A node already
  being drained when its instance is terminated goes by the earlier deadline and is not replaced.
- Groups named in ``faults.stuck_nodegroups`` never change while they are stuck: a terminated instance's
  node still goes, but its replacement launches only once the group is no longer stuck.
- Each registration is recorded as a delay (``twin.delays``: ``node-boot``, the provisioning delay it
  waited out), each deletion as a ``node-drain`` (waiting on the scale-down or on the termination).
"""

from __future__ import annotations

import ipaddress
import secrets
import time
from typing import Any

from twin.config import Timing
from twin.controllers.base import NODEGROUP_LABEL, Controller, controller_ref
from twin.ec2_api import ec2_instances, instance_id
from twin.eks import NodeGroupState, read_nodegroups
from twin.faults import Faults
from twin.resources import NODES, PODS
from twin.store import Obj, Store, now_iso

NOT_READY_MESSAGE = (
    "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady "
    "message:Network plugin returns error: cni plugin not initialized"
)
NODE_NETWORK = ipaddress.ip_network("192.168.0.0/16")

# instance type -> (cpu, memory, max pods), as EKS reports them
INSTANCE_SHAPES: dict[str, tuple[str, str, str]] = {
    "m5.large": ("2", "7910360Ki", "29"),
    "m5.xlarge": ("4", "15834700Ki", "58"),
    "m5.2xlarge": ("8", "31811668Ki", "58"),
    "t3.medium": ("2", "3943000Ki", "17"),
    "t3.large": ("2", "7910360Ki", "35"),
}


class NodeGroupController(Controller):
    """Creates, drains and deletes Node objects so each EKS node group has its desired size."""

    name = "nodegroups"
    watches = (NODES,)  # moto's state is polled every resync; launches and drains ask for a wake-up

    def __init__(
        self,
        store: Store,
        timing: Timing,
        faults: Faults,
        *,
        region: str,
        cluster: str,
        kubernetes_version: str = "1.30",
    ) -> None:
        super().__init__(store, timing, faults)
        self.region, self.cluster, self.kubernetes_version = region, cluster, kubernetes_version
        self._launching: dict[str, list[tuple[float, float, str]]] = {}  # group -> (register at, delay, why)
        self._draining: dict[str, tuple[float, str]] = {}  # node name -> (monotonic deletion time, why)
        self._serial = 0

    def reconcile(self) -> None:
        groups = read_nodegroups(self.region, self.cluster)
        if groups is None:
            groups = []
        now = time.monotonic()
        all_nodes = list(self.store.iter_all(NODES))
        nodes_by_group: dict[str, list[Obj]] = {}
        for node in all_nodes:
            group = (node["metadata"].get("labels") or {}).get(NODEGROUP_LABEL)
            if group:
                nodes_by_group.setdefault(group, []).append(node)
        stuck = set(self.faults.stuck_nodegroups)
        known = {g.name for g in groups}
        self._take_terminated(all_nodes, {g.name: g for g in groups if g.name not in stuck}, now)
        for group in groups:
            if group.name not in stuck:
                self._follow(group, nodes_by_group.get(group.name, []), now)
        for name, nodes in nodes_by_group.items():
            if name not in known and name not in stuck:
                self._launching.pop(name, None)
                self._shrink(nodes, len(nodes), now)
        self._finish_drains(now)

    # ---- growing and shrinking ----------------------------------------------------------------

    def _follow(self, group: NodeGroupState, nodes: list[Obj], now: float) -> None:
        live = [n for n in nodes if n["metadata"]["name"] not in self._draining]
        launching = self._launching.setdefault(group.name, [])
        missing = group.desired - len(live) - len(launching)
        if missing > 0:
            delay = self.timing.node_provision_s + self.faults.slow_provisioning_s
            why = f"node group {group.name} scaled to {group.desired}"
            launching.extend([(now + delay, delay, why)] * missing)
            self.wake_in(delay)
        elif missing < 0:
            surplus = -missing
            while surplus and launching:
                launching.pop()
                surplus -= 1
            self._shrink(live, surplus, now)
        due = [t for t in launching if t[0] <= now]
        if due:
            self._launching[group.name] = [t for t in launching if t[0] > now]
            for at, delay, why in due:
                name = self._register(group)
                self.store.delays.record("node-boot", f"node {name}", started=at - delay, duration_s=delay,
                                         waiting_on=why)

    def _shrink(self, live: list[Obj], count: int, now: float) -> None:
        """Drain the ``count`` newest nodes."""
        newest_first = sorted(
            live,
            key=lambda n: (n["metadata"].get("creationTimestamp", ""), n["metadata"]["name"]),
            reverse=True,
        )
        for node in newest_first[:count]:
            name = node["metadata"]["name"]
            if name in self._draining:
                continue
            group = (node["metadata"].get("labels") or {}).get(NODEGROUP_LABEL, "")
            self._draining[name] = (now + self.timing.node_drain_s, f"node group {group} scaled down")
            self.wake_in(self.timing.node_drain_s)
            self.patch(NODES, None, name, _cordon)
            for pod in self.store.list(PODS, node_name=name)[0]:
                if (controller_ref(pod) or {}).get("kind") != "DaemonSet":
                    self.delete(PODS, pod)

    def _take_terminated(self, nodes: list[Obj], replaceable: dict[str, NodeGroupState], now: float) -> None:
        """Schedule the deletion of every node whose instance was terminated, and its group's replacement
        (for groups in ``replaceable``), both timed from the termination."""
        terminated = ec2_instances(self.store).terminated()
        if not terminated:
            return
        for node in nodes:
            instance = instance_id(node)
            at = terminated.get(instance or "")
            if at is None:
                continue
            name = node["metadata"]["name"]
            deadline, why = at + self.timing.node_drain_s, f"instance {instance} terminated"
            draining = self._draining.get(name)
            if draining is not None:  # already going (a scale-down, or this termination seen before)
                if deadline < draining[0]:
                    self._draining[name] = (deadline, why)
                continue
            self._draining[name] = (deadline, why)
            self.wake_in(deadline - now)
            group = replaceable.get((node["metadata"].get("labels") or {}).get(NODEGROUP_LABEL, ""))
            if group is not None:
                delay = self.timing.node_provision_s + self.faults.slow_provisioning_s
                self._launching.setdefault(group.name, []).append((at + delay, delay, f"replacing {why}"))
                self.wake_in(at + delay - now)

    def _finish_drains(self, now: float) -> None:
        for name, (deadline, why) in list(self._draining.items()):
            if deadline > now:
                continue
            drain = self.timing.node_drain_s
            self.store.delays.record("node-drain", f"node {name}", started=deadline - drain, duration_s=drain,
                                     waiting_on=why)
            for pod in self.store.list(PODS, node_name=name)[0]:
                self.delete(PODS, pod)
            node = self.store.get(NODES, None, name)
            if node is not None:
                self.delete(NODES, node)
            del self._draining[name]

    # ---- registration ---------------------------------------------------------------------------

    def _register(self, group: NodeGroupState) -> str:
        """Create the next Node of ``group``; its name."""
        while True:
            self._serial += 1
            n = self._serial - 1
            ip = NODE_NETWORK[256 * (1 + n // 250) + 4 + n % 250]  # 192.168.1.4, .5, ... then 192.168.2.4
            name = node_name(str(ip), self.region)
            if self.store.get(NODES, None, name) is None:
                break
        zone = f"{self.region}{'abc'[self._serial % 3]}"
        self.store.create(
            NODES,
            node_object(
                name=name,
                ip=str(ip),
                zone=zone,
                region=self.region,
                group=group,
                kubernetes_version=self.kubernetes_version,
            ),
        )
        return name


def node_name(ip: str, region: str) -> str:
    """EKS names nodes after their private DNS name."""
    return f"ip-{ip.replace('.', '-')}.{region}.compute.internal"


def node_object(
    *, name: str, ip: str, zone: str, region: str, group: NodeGroupState, kubernetes_version: str = "1.30"
) -> Obj:
    """A freshly registered EKS node: labels, taints, addresses, capacity, NotReady until a CNI runs."""
    cpu, memory, pods = INSTANCE_SHAPES.get(group.instance_type, INSTANCE_SHAPES["m5.large"])
    stamp = now_iso()
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/instance-type": group.instance_type,
        "node.kubernetes.io/instance-type": group.instance_type,
        "topology.kubernetes.io/region": region,
        "topology.kubernetes.io/zone": zone,
        "failure-domain.beta.kubernetes.io/region": region,
        "failure-domain.beta.kubernetes.io/zone": zone,
        NODEGROUP_LABEL: group.name,
        "eks.amazonaws.com/capacityType": group.capacity_type,
        "eks.amazonaws.com/nodegroup-image": "ami-0c2d3e4f5a6b7c8d9",
        **group.labels,
    }
    spec: dict[str, Any] = {"providerID": f"aws:///{zone}/i-0{secrets.token_hex(8)}"}
    if group.taints:
        spec["taints"] = [
            {"key": k, "value": v, "effect": e} if v else {"key": k, "effect": e} for k, v, e in group.taints
        ]

    def condition(kind: str, status: str, reason: str, message: str) -> dict[str, str]:
        return {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": stamp,
            "lastTransitionTime": stamp,
        }

    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {
                "alpha.kubernetes.io/provided-node-ip": ip,
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        "spec": spec,
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": ip},
                {"type": "InternalDNS", "address": name},
                {"type": "Hostname", "address": name},
            ],
            "capacity": {"cpu": cpu, "memory": memory, "pods": pods, "ephemeral-storage": "83873772Ki"},
            "allocatable": {"cpu": cpu, "memory": memory, "pods": pods, "ephemeral-storage": "76224326324"},
            "conditions": [
                condition(
                    "MemoryPressure",
                    "False",
                    "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available",
                ),
                condition(
                    "DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"
                ),
                condition(
                    "PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"
                ),
                condition("Ready", "False", "KubeletNotReady", NOT_READY_MESSAGE),
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": f"v{kubernetes_version}.4-eks-a737599",
                "kubeProxyVersion": f"v{kubernetes_version}.4-eks-a737599",
                "containerRuntimeVersion": "containerd://1.7.22",
                "kernelVersion": "5.10.226-214.880.amzn2.x86_64",
                "osImage": "Amazon Linux 2",
                "machineID": secrets.token_hex(16),
                "systemUUID": secrets.token_hex(16),
                "bootID": secrets.token_hex(16),
            },
        },
    }


def _cordon(node: Obj) -> None:
    node.setdefault("spec", {})["unschedulable"] = True
