"""EC2 ``TerminateInstances`` for a node's instance: the node goes and its group replaces it, as on AWS.

Covers, through boto3 and the official Kubernetes client over HTTP against a running twin (default
scenario, FAST timing): the answer EC2 gives (running -> shutting-down); the old Node and its pods go,
a new node of the same group registers under another name and instance id, the group's desired size is
unchanged and the cluster is back to it; the replacement's CNI directory starts empty (no
``10-aws.conflist`` without aws-node); unknown ids fail with ``InvalidInstanceID.NotFound`` and change
nothing; a second call answers again without a second replacement; the request log names
``ec2:TerminateInstances``; the waits are recorded as ``node-drain`` and ``node-boot`` delays. And the
node-group controller alone (passes run by the test, an EKS server over the test's store): terminating
evicts nothing before the node goes; a stuck group's node goes and is replaced once the group is no
longer stuck.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest
from botocore.exceptions import ClientError

from twin import eks
from twin.cluster import Twin
from twin.config import FAST, Timing
from twin.controllers.cni_config import AWS_CONF
from twin.controllers.nodegroups import NodeGroupController
from twin.ec2_api import ec2_instances, instance_id
from twin.faults import Faults
from twin.resources import NAMESPACES, NODES, PODS
from twin.scenario import load_scenario
from twin.store import Obj, Store

GROUP = "ng-1"
SHUTTING_DOWN = {"Code": 32, "Name": "shutting-down"}
RUNNING = {"Code": 16, "Name": "running"}
TERMINATED = {"Code": 48, "Name": "terminated"}
UNKNOWN = "i-0123456789abcdef0"
WAIT_S = 15


@pytest.fixture
def twin() -> Iterator[Twin]:
    """A fresh settled twin per test: terminating nodes changes the cluster."""
    t = Twin(load_scenario("default"), timing=FAST)
    t.start()
    yield t
    t.stop()


def core(twin: Twin) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(twin.kube_client())


def group_nodes(twin: Twin) -> dict[str, str]:
    """Node name -> instance id (from ``spec.providerID``) of the group's nodes."""
    nodes = core(twin).list_node(label_selector=f"eks.amazonaws.com/nodegroup={GROUP}").items
    return {n.metadata.name: n.spec.provider_id.rsplit("/", 1)[-1] for n in nodes}


def pods_on(twin: Twin, node: str) -> list[Any]:
    return core(twin).list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}").items


def terminate(twin: Twin, *ids: str, **kw: Any) -> list[dict[str, Any]]:
    answer: list[dict[str, Any]] = twin.boto3_client("ec2").terminate_instances(
        InstanceIds=list(ids), **kw)["TerminatingInstances"]
    return answer


def replaced(twin: Twin, before: dict[str, str], old: str) -> str:
    """Wait until ``old`` is gone and the group is back to its size; the one new node's name."""
    twin.wait_for(lambda: old not in group_nodes(twin) and len(group_nodes(twin)) == len(before), WAIT_S,
                  f"{old} replaced")
    [new] = set(group_nodes(twin)) - set(before)
    return new


def test_terminating_a_nodes_instance_replaces_the_node(twin: Twin) -> None:
    before = group_nodes(twin)
    old, instance = sorted(before.items())[0]
    old_pods = {p.metadata.uid for p in pods_on(twin, old)}
    assert old_pods, "aws-node and kube-proxy at least run there"

    assert terminate(twin, instance) == [
        {"InstanceId": instance, "CurrentState": SHUTTING_DOWN, "PreviousState": RUNNING}]
    new = replaced(twin, before, old)

    assert pods_on(twin, old) == []
    live = {p.metadata.uid for p in core(twin).list_pod_for_all_namespaces().items}
    assert not old_pods & live
    after = group_nodes(twin)
    assert new != old and after[new] not in before.values()
    assert len(core(twin).list_node().items) == 3
    ng = twin.boto3_client("eks").describe_nodegroup(clusterName=twin.cluster_name, nodegroupName=GROUP)
    assert ng["nodegroup"]["scalingConfig"]["desiredSize"] == 3
    twin.wait_for(twin.settled, WAIT_S, "the replacement Ready and every pod Running", detail=twin.unsettled)


def test_the_replacement_has_no_aws_cni_config_when_aws_node_is_gone(twin: Twin) -> None:
    twin.wait_for(lambda: all(AWS_CONF in f for f in twin.cni_configs().values()), WAIT_S, "aws-node's files")
    kubernetes.client.AppsV1Api(twin.kube_client()).delete_namespaced_daemon_set("aws-node", "kube-system")
    twin.wait_for(lambda: not core(twin).list_namespaced_pod("kube-system", label_selector="k8s-app=aws-node")
                  .items, WAIT_S, "aws-node's pods gone")
    before = group_nodes(twin)
    old = sorted(before)[0]

    terminate(twin, before[old])
    new = replaced(twin, before, old)
    twin.wait_for(lambda: new in twin.cni_configs(), WAIT_S, "the kubelets' pass over the replacement")
    time.sleep(5 * FAST.resync_s)

    configs = twin.cni_configs()
    assert configs[new] == []
    assert {n: configs[n] for n in before if n != old} == {n: [AWS_CONF] for n in before if n != old}
    node = core(twin).read_node(new)
    assert [c.status for c in node.status.conditions if c.type == "Ready"] == ["False"]


def test_an_unknown_instance_id_is_not_found_and_changes_nothing(twin: Twin) -> None:
    before = group_nodes(twin)
    known = sorted(before.values())[0]
    for ids in ([UNKNOWN], [known, UNKNOWN]):
        with pytest.raises(ClientError) as raised:
            terminate(twin, *ids)
        error = raised.value.response
        assert error["Error"] == {"Code": "InvalidInstanceID.NotFound",
                                  "Message": f"The instance ID '{UNKNOWN}' does not exist"}
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert ec2_instances(twin.store).terminated() == {}
    time.sleep(5 * FAST.resync_s)
    assert group_nodes(twin) == before


def test_a_dry_run_changes_nothing(twin: Twin) -> None:
    before = group_nodes(twin)
    with pytest.raises(ClientError) as raised:
        terminate(twin, sorted(before.values())[0], DryRun=True)
    assert raised.value.response["Error"]["Code"] == "DryRunOperation"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert ec2_instances(twin.store).terminated() == {}


def test_terminating_again_answers_again_and_replaces_once(twin: Twin) -> None:
    before = group_nodes(twin)
    old, instance = sorted(before.items())[0]
    twin.faults.controllers_down = ["nodegroups"]  # hold the node in shutting-down

    assert terminate(twin, instance)[0]["CurrentState"] == SHUTTING_DOWN
    assert terminate(twin, instance) == [
        {"InstanceId": instance, "CurrentState": SHUTTING_DOWN, "PreviousState": SHUTTING_DOWN}]
    assert old in group_nodes(twin)

    twin.faults.controllers_down = []
    new = replaced(twin, before, old)
    assert terminate(twin, instance) == [
        {"InstanceId": instance, "CurrentState": TERMINATED, "PreviousState": TERMINATED}]
    time.sleep(5 * FAST.resync_s)
    assert set(group_nodes(twin)) == set(before) - {old} | {new}


def test_the_request_log_names_the_iam_action(twin: Twin) -> None:
    instance = sorted(group_nodes(twin).values())[0]
    terminate(twin, instance)
    with pytest.raises(ClientError):
        terminate(twin, UNKNOWN)
    calls = [(r.iam_action, r.code, r.access_key) for r in twin.eks.request_log if r.service == "ec2"]
    assert calls == [("ec2:TerminateInstances", 200, "testing"), ("ec2:TerminateInstances", 400, "testing")]


def test_the_waits_are_recorded_as_delays(twin: Twin) -> None:
    before = group_nodes(twin)
    old, instance = sorted(before.items())[0]
    since = time.time()
    terminate(twin, instance)
    new = replaced(twin, before, old)

    delays = {(d.kind, d.subject): d for d in twin.delays(since=since)}
    drain, boot = delays["node-drain", f"node {old}"], delays["node-boot", f"node {new}"]
    assert (drain.waiting_on, drain.duration_s) == (f"instance {instance} terminated", FAST.node_drain_s)
    assert (boot.waiting_on, boot.duration_s) == (f"replacing instance {instance} terminated",
                                                  FAST.node_provision_s)
    assert abs(drain.start - boot.start) < 0.01, "both waits begin at the termination"


# ---- the node-group controller alone -----------------------------------------------------------------

DELAY = 0.15
TIMING = Timing(node_provision_s=DELAY, node_drain_s=DELAY, resync_s=0.02)


class Rig:
    """An EKS server over a store, a cluster with a group of two nodes, and the controller (passes by hand)."""

    def __init__(self) -> None:
        self.store, self.faults = Store(), Faults()
        self.store.create(NAMESPACES, {"metadata": {"name": "default"}})
        self.server = eks.EksServer(region="us-west-1", store=self.store)
        self.server.start()
        self.cluster = f"c-{uuid.uuid4().hex[:8]}"
        self.eks = self.server.client()
        eks.create_cluster(self.eks, name=self.cluster, version="1.30")
        eks.create_nodegroup(self.eks, cluster=self.cluster, name=GROUP, instance_type="m5.large", desired=2,
                             min_size=0, max_size=10)
        self.controller = NodeGroupController(self.store, TIMING, self.faults, region="us-west-1",
                                              cluster=self.cluster)
        self.settle()

    def nodes(self) -> list[Obj]:
        """The group's nodes, oldest first."""
        return sorted(self.store.list(NODES)[0], key=lambda n: (n["metadata"]["creationTimestamp"],
                                                                 n["metadata"]["name"]))

    def names(self) -> list[str]:
        return [n["metadata"]["name"] for n in self.nodes()]

    def settle(self, seconds: float = DELAY + 0.1) -> None:
        """Reconcile, wait out one delay, reconcile again."""
        self.controller.reconcile()
        time.sleep(seconds)
        self.controller.reconcile()

    def terminate(self, node: Obj) -> None:
        answer = self.server.client("ec2").terminate_instances(InstanceIds=[instance_id(node)])
        assert answer["TerminatingInstances"][0]["PreviousState"] == RUNNING

    def stop(self) -> None:
        self.controller.stop()
        self.server.stop()
        eks.forget_cluster("us-west-1", self.cluster)


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig()
    yield r
    r.stop()


class TestController:
    def test_terminating_evicts_nothing_before_the_node_goes(self, rig: Rig) -> None:
        node = rig.nodes()[0]
        name = node["metadata"]["name"]
        rig.store.create(PODS, {"metadata": {"name": "web-1", "namespace": "default", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "u", "controller": True}]},
            "spec": {"nodeName": name, "containers": [{"name": "c", "image": "i"}]}})
        rig.terminate(node)
        rig.controller.reconcile()
        assert not rig.store.must_get(NODES, None, name)["spec"].get("unschedulable")
        assert [p["metadata"]["name"] for p in rig.store.list(PODS, node_name=name)[0]] == ["web-1"]
        rig.settle()
        assert rig.store.get(NODES, None, name) is None
        assert rig.store.list(PODS)[0] == []
        assert len(rig.nodes()) == 2

    def test_a_stuck_groups_node_goes_and_is_replaced_once_unstuck(self, rig: Rig) -> None:
        older, newer = rig.nodes()
        rig.faults.stuck_nodegroups = [GROUP]
        rig.terminate(older)
        rig.settle()
        rig.settle()
        assert rig.names() == [newer["metadata"]["name"]]
        rig.faults.stuck_nodegroups = []
        rig.settle()
        assert len(rig.names()) == 2 and older["metadata"]["name"] not in rig.names()
