"""Preflight refuses a cluster the migration would hurt, says what to fix, and writes nothing.

Covers, against a twin through the Airflow connections (as a task builds its clients):
- the Kubernetes connection must reach the EKS cluster named in the params (endpoint and CA of
  ``describe_cluster``); another cluster's CA is refused with both named;
- every node belongs to a listed node group: a node of another group, a self-managed or a Karpenter node
  is refused by name; Fargate and hybrid nodes are reported and left out;
- the new group's ``node.cilium.io/agent-not-ready`` taint has effect NoExecute, else the message says
  the command that fixes it;
- no refusal wrote anything: every request the checks made was a read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from cilium_migration import preflight
from cilium_migration.clients import Clients
from cilium_migration.errors import PermanentError
from cilium_migration.spec import MigrationSpec
from twin import eks
from twin.cluster import Twin
from twin.config import FAST
from twin.resources import NODES
from twin.scenario import load_scenario

PARAMS = {"cluster_name": "dc-migrate", "region": "us-west-1"}
OTHER_CA = b"-----BEGIN CERTIFICATE-----\nTUlJQm90aGVyIGNsdXN0ZXI=\n-----END CERTIFICATE-----\n"


@pytest.fixture(scope="module")
def twin() -> Iterator[Twin]:
    t = Twin(load_scenario("default"), timing=FAST)
    t.start()
    mp = pytest.MonkeyPatch()
    for key, conn in t.airflow_connections().items():
        mp.setenv(key, json.dumps(conn))
    try:
        yield t
    finally:
        mp.undo()
        t.stop()


@pytest.fixture
def clients(twin: Twin) -> Clients:
    return Clients(aws_conn_id="aws_default", kubernetes_conn_id="kubernetes_default", region="us-west-1")


@pytest.fixture
def spec() -> MigrationSpec:
    return MigrationSpec.from_params(PARAMS)


def refuse(twin: Twin, clients: Clients, spec: MigrationSpec, match: str) -> str:
    """Run preflight, expecting a refusal that matches; assert no write reached the API server."""
    start = len(twin.api.request_log)
    with pytest.raises(PermanentError, match=match) as refused:
        preflight.check(clients, spec)
    writes = [r for r in twin.api.request_log[start:] if r.verb not in ("get", "list", "watch", "")]
    assert not writes, f"preflight wrote: {writes}"
    return str(refused.value)


def add_node(twin: Twin, name: str, labels: dict[str, str]) -> None:
    twin.store.create(NODES, {"apiVersion": "v1", "kind": "Node",
                              "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **labels}}})


def test_the_runbook_cluster_passes(twin: Twin, clients: Clients, spec: MigrationSpec) -> None:
    verified = preflight.check(clients, spec)
    assert any("reaches dc-migrate's API server" in line for line in verified)
    assert "every node belongs to a listed node group" in verified


def test_a_connection_to_another_cluster_is_refused_naming_both(twin: Twin, clients: Clients,
                                                                 spec: MigrationSpec) -> None:
    eks.set_cluster_endpoint("us-west-1", "dc-migrate", "https://other.eks.example:443", OTHER_CA)
    try:
        message = refuse(twin, clients, spec, "points at another cluster")
        assert twin.kube_tls_url in message and "https://other.eks.example:443" in message
    finally:
        eks.set_cluster_endpoint("us-west-1", "dc-migrate", twin.kube_tls_url, twin.api.ca_pem)


def test_a_node_of_another_managed_group_is_refused_by_name(twin: Twin, clients: Clients,
                                                             spec: MigrationSpec) -> None:
    boto = twin.boto3_client("eks")
    eks.create_nodegroup(boto, cluster="dc-migrate", name="ng-batch", instance_type="m5.large", desired=1,
                         min_size=0, max_size=1)
    try:
        twin.wait_for(lambda: bool(batch_nodes(twin)), 30, "ng-batch's node")
        message = refuse(twin, clients, spec, "belong to no listed node group")
        assert f"{batch_nodes(twin)[0]} (node group ng-batch)" in message
    finally:
        boto.delete_nodegroup(clusterName="dc-migrate", nodegroupName="ng-batch")
        twin.wait_for(lambda: not batch_nodes(twin), 30, "ng-batch's node gone")


def batch_nodes(twin: Twin) -> list[str]:
    return [n["metadata"]["name"] for n in twin.store.iter_all(NODES)
            if n["metadata"]["labels"].get("eks.amazonaws.com/nodegroup") == "ng-batch"]


@pytest.mark.parametrize(("name", "labels", "named"), [
    pytest.param("ip-10-0-9-2", {}, "no managed node group", id="self-managed"),
    pytest.param("ip-10-0-9-3", {"karpenter.sh/nodepool": "default"}, "Karpenter NodePool default", id="karpenter"),
])
def test_a_node_outside_the_listed_groups_is_refused_by_name(twin: Twin, clients: Clients, spec: MigrationSpec,
                                                              name: str, labels: dict[str, str], named: str) -> None:
    add_node(twin, name, labels)
    try:
        message = refuse(twin, clients, spec, "belong to no listed node group")
        assert f"{name} ({named})" in message
    finally:
        twin.store.delete(NODES, None, name)


def test_fargate_nodes_are_reported_and_left_out(twin: Twin, clients: Clients, spec: MigrationSpec) -> None:
    add_node(twin, "fargate-ip-10-0-9-9", {"eks.amazonaws.com/compute-type": "fargate"})
    try:
        verified = preflight.check(clients, spec)
        assert any("fargate-ip-10-0-9-9 (fargate)" in line and "left out" in line for line in verified)
    finally:
        twin.store.delete(NODES, None, "fargate-ip-10-0-9-9")


def test_a_noschedule_taint_on_the_new_group_is_refused_with_the_fix(twin: Twin, clients: Clients,
                                                                      spec: MigrationSpec) -> None:
    boto = twin.boto3_client("eks")
    taint = {"key": "node.cilium.io/agent-not-ready", "value": "true"}
    boto.update_nodegroup_config(clusterName="dc-migrate", nodegroupName="ng-cilium",
                                 taints={"addOrUpdateTaints": [{**taint, "effect": "NO_SCHEDULE"}],
                                         "removeTaints": [{**taint, "effect": "NO_EXECUTE"}]})
    try:
        message = refuse(twin, clients, spec, "effect NO_SCHEDULE; Cilium's EKS guide requires NoExecute")
        assert "aws eks update-nodegroup-config" in message and "effect=NO_EXECUTE" in message
    finally:
        boto.update_nodegroup_config(clusterName="dc-migrate", nodegroupName="ng-cilium",
                                     taints={"addOrUpdateTaints": [{**taint, "effect": "NO_EXECUTE"}],
                                             "removeTaints": [{**taint, "effect": "NO_SCHEDULE"}]})
