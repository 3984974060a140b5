"""Node-group controller: Node objects follow each EKS node group's desired size.

Covers: nodes register after node_provision_s (+ slow_provisioning_s) NotReady, with the conventions'
name, labels, taints, addresses and capacity; shrinking cancels pending launches first, then cordons the
newest nodes, deletes their non-DaemonSet pods at once and the Node (with what is left) after
node_drain_s; stuck groups never change; a deleted group's nodes go; the background thread does it alone.
Scaling goes through boto3 against moto's server, as the DAG scales.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from twin import eks
from twin.config import Timing
from twin.controllers.nodegroups import NOT_READY_MESSAGE, NodeGroupController
from twin.faults import Faults
from twin.resources import NAMESPACES, NODES, PODS
from twin.store import Obj, Store

REGION = "us-west-1"
DELAY = 0.15
TIMING = Timing(node_provision_s=DELAY, node_drain_s=DELAY, resync_s=0.02)
TAINT = {"key": "node.cilium.io/agent-not-ready", "value": "true", "effect": "NO_SCHEDULE"}


class Rig:
    """A cluster in moto, a store, and the controller between them."""

    def __init__(self, eks_server: eks.EksServer) -> None:
        self.client = eks_server.client()
        self.cluster = f"c-{uuid.uuid4().hex[:8]}"
        self.store, self.faults = Store(), Faults()
        self.store.create(NAMESPACES, {"metadata": {"name": "default"}})
        eks.create_cluster(self.client, name=self.cluster, version="1.30")
        self.controller = NodeGroupController(
            self.store, TIMING, self.faults, region=REGION, cluster=self.cluster
        )

    def add_group(self, name: str, desired: int, **kw: Any) -> None:
        eks.create_nodegroup(
            self.client,
            cluster=self.cluster,
            name=name,
            instance_type="m5.large",
            desired=desired,
            min_size=0,
            max_size=10,
            **kw,
        )

    def scale(self, name: str, desired: int) -> None:
        self.client.update_nodegroup_config(
            clusterName=self.cluster,
            nodegroupName=name,
            scalingConfig={"minSize": 0, "maxSize": 10, "desiredSize": desired},
        )

    def nodes(self, group: str) -> list[Obj]:
        return [
            n
            for n in self.store.list(NODES)[0]
            if n["metadata"]["labels"]["eks.amazonaws.com/nodegroup"] == group
        ]

    def settle(self, seconds: float = DELAY + 0.1) -> None:
        """Reconcile, wait out one delay, reconcile again."""
        self.controller.reconcile()
        time.sleep(seconds)
        self.controller.reconcile()

    def pod(self, name: str, node: str, owner_kind: str | None) -> None:
        refs = [{"apiVersion": "apps/v1", "kind": owner_kind, "name": "x", "uid": "u", "controller": True}]
        self.store.create(
            PODS,
            {
                "metadata": {
                    "name": name,
                    "namespace": "default",
                    **({"ownerReferences": refs} if owner_kind else {}),
                },
                "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]},
            },
        )


@pytest.fixture
def rig(eks_server: eks.EksServer) -> Iterator[Rig]:
    r = Rig(eks_server)
    yield r
    r.controller.stop()
    eks.forget_cluster(REGION, r.cluster)


class TestGrowing:
    def test_nodes_register_after_the_provisioning_delay(self, rig: Rig) -> None:
        rig.add_group("ng-1", 3)
        rig.controller.reconcile()
        assert rig.nodes("ng-1") == []
        time.sleep(DELAY + 0.05)
        rig.controller.reconcile()
        assert len(rig.nodes("ng-1")) == 3

    def test_slow_provisioning_fault_adds_to_the_delay(self, rig: Rig) -> None:
        rig.faults.slow_provisioning_s = 0.5
        rig.add_group("ng-1", 1)
        rig.settle()
        assert rig.nodes("ng-1") == []
        rig.settle(0.5)
        assert len(rig.nodes("ng-1")) == 1

    def test_node_shape_follows_the_conventions(self, rig: Rig) -> None:
        rig.add_group("ng-cilium", 1, labels={"role": "cilium"}, taints=[TAINT])
        rig.settle()
        [node] = rig.nodes("ng-cilium")
        name, labels = node["metadata"]["name"], node["metadata"]["labels"]
        m = re.fullmatch(r"ip-192-168-(\d+)-(\d+)\.us-west-1\.compute\.internal", name)
        assert m
        ip = f"192.168.{m.group(1)}.{m.group(2)}"
        assert labels["kubernetes.io/hostname"] == name
        assert {
            k: labels[k]
            for k in (
                "kubernetes.io/os",
                "kubernetes.io/arch",
                "node.kubernetes.io/instance-type",
                "topology.kubernetes.io/region",
                "eks.amazonaws.com/nodegroup",
                "eks.amazonaws.com/capacityType",
                "role",
            )
        } == {
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "node.kubernetes.io/instance-type": "m5.large",
            "topology.kubernetes.io/region": REGION,
            "eks.amazonaws.com/nodegroup": "ng-cilium",
            "eks.amazonaws.com/capacityType": "ON_DEMAND",
            "role": "cilium",
        }
        zone = labels["topology.kubernetes.io/zone"]
        assert zone.startswith(REGION)
        assert node["spec"]["taints"] == [
            {"key": "node.cilium.io/agent-not-ready", "value": "true", "effect": "NoSchedule"}
        ]
        assert re.fullmatch(rf"aws:///{zone}/i-0[0-9a-f]{{16}}", node["spec"]["providerID"])
        status = node["status"]
        assert {"type": "InternalIP", "address": ip} in status["addresses"]
        assert {"type": "Hostname", "address": name} in status["addresses"]
        assert (status["capacity"]["cpu"], status["capacity"]["pods"]) == ("2", "29")
        assert status["nodeInfo"]["kubeletVersion"].startswith("v1.30.")
        ready = [c for c in status["conditions"] if c["type"] == "Ready"]
        assert ready == [dict(ready[0], status="False", reason="KubeletNotReady", message=NOT_READY_MESSAGE)]

    def test_names_are_unique(self, rig: Rig) -> None:
        rig.add_group("ng-1", 5)
        rig.add_group("ng-2", 5)
        rig.settle()
        names = [n["metadata"]["name"] for n in rig.store.list(NODES)[0]]
        assert len(names) == len(set(names)) == 10


class TestShrinking:
    def test_drain_deletes_workload_pods_at_once_and_the_node_later(self, rig: Rig) -> None:
        rig.add_group("ng-1", 2)
        rig.settle()
        newest = max(
            rig.nodes("ng-1"), key=lambda n: (n["metadata"]["creationTimestamp"], n["metadata"]["name"])
        )
        name = newest["metadata"]["name"]
        rig.pod("web-1", name, "ReplicaSet")
        rig.pod("bare", name, None)
        rig.pod("aws-node-1", name, "DaemonSet")
        rig.scale("ng-1", 1)
        rig.controller.reconcile()
        assert rig.store.must_get(NODES, None, name)["spec"]["unschedulable"] is True
        assert [p["metadata"]["name"] for p in rig.store.list(PODS, node_name=name)[0]] == ["aws-node-1"]
        time.sleep(DELAY + 0.05)
        rig.controller.reconcile()
        assert rig.store.get(NODES, None, name) is None
        assert rig.store.list(PODS, node_name=name)[0] == []
        assert len(rig.nodes("ng-1")) == 1

    def test_shrinking_cancels_pending_launches_first(self, rig: Rig) -> None:
        rig.add_group("ng-1", 1)
        rig.settle()
        rig.scale("ng-1", 3)
        rig.controller.reconcile()
        rig.scale("ng-1", 1)
        rig.settle()
        nodes = rig.nodes("ng-1")
        assert len(nodes) == 1 and not nodes[0]["spec"].get("unschedulable")

    def test_scale_to_zero(self, rig: Rig) -> None:
        rig.add_group("ng-1", 3)
        rig.settle()
        rig.scale("ng-1", 0)
        rig.settle()
        assert rig.nodes("ng-1") == []

    def test_a_deleted_groups_nodes_are_drained(self, rig: Rig) -> None:
        rig.add_group("ng-old", 2)
        rig.settle()
        rig.client.delete_nodegroup(clusterName=rig.cluster, nodegroupName="ng-old")
        rig.settle()
        assert rig.nodes("ng-old") == []


@pytest.mark.parametrize("change", [pytest.param(3, id="grow"), pytest.param(0, id="shrink")])
def test_stuck_groups_never_change(rig: Rig, change: int) -> None:
    rig.add_group("ng-1", 1)
    rig.settle()
    rig.faults.stuck_nodegroups = ["ng-1"]
    rig.scale("ng-1", change)
    rig.settle()
    assert len(rig.nodes("ng-1")) == 1
    rig.faults.stuck_nodegroups = []
    rig.settle()
    assert len(rig.nodes("ng-1")) == change


def test_background_thread_follows_scaling(rig: Rig) -> None:
    rig.add_group("ng-1", 0)
    rig.controller.start()
    rig.scale("ng-1", 2)
    deadline = time.monotonic() + 5
    while len(rig.nodes("ng-1")) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(rig.nodes("ng-1")) == 2
