"""The twin's EKS side: moto's server on 127.0.0.1, reached with boto3 as the DAG reaches EKS.

Covers: a free port is picked; the scenario helpers create the cluster and node groups (taints in EKS
form); ``update_nodegroup_config`` shows in ``read_nodegroups`` (what the node-group controller polls)
with effects mapped to Kubernetes'; ``forget_cluster`` frees the name; clients leave os.environ alone.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from twin import eks

REGION = "us-west-1"
TAINT = {"key": "node.cilium.io/agent-not-ready", "value": "true", "effect": "NO_SCHEDULE"}


@pytest.fixture
def cluster(eks_server: eks.EksServer) -> Iterator[str]:
    client = eks_server.client()
    eks.create_cluster(client, name="dc-test", version="1.30")
    eks.create_nodegroup(
        client,
        cluster="dc-test",
        name="ng-1",
        instance_type="m5.large",
        desired=3,
        min_size=3,
        max_size=3,
        labels={"team": "a"},
    )
    eks.create_nodegroup(
        client,
        cluster="dc-test",
        name="ng-cilium",
        instance_type="m5.large",
        desired=0,
        min_size=0,
        max_size=3,
        taints=[TAINT],
    )
    yield "dc-test"
    eks.forget_cluster(REGION, "dc-test")


def test_listens_on_a_free_local_port(eks_server: eks.EksServer) -> None:
    assert eks_server.port > 0 and eks_server.url == f"http://127.0.0.1:{eks_server.port}"


def test_describe_shows_what_the_scenario_created(eks_server: eks.EksServer, cluster: str) -> None:
    client = eks_server.client()
    assert client.describe_cluster(name=cluster)["cluster"]["version"] == "1.30"
    assert sorted(client.list_nodegroups(clusterName=cluster)["nodegroups"]) == ["ng-1", "ng-cilium"]
    ng = client.describe_nodegroup(clusterName=cluster, nodegroupName="ng-cilium")["nodegroup"]
    assert ng["taints"] == [TAINT]
    assert ng["scalingConfig"] == {"minSize": 0, "maxSize": 3, "desiredSize": 0}


def test_scaling_shows_in_the_state_the_controller_polls(eks_server: eks.EksServer, cluster: str) -> None:
    eks_server.client().update_nodegroup_config(
        clusterName=cluster,
        nodegroupName="ng-cilium",
        scalingConfig={"minSize": 0, "maxSize": 3, "desiredSize": 3},
    )
    groups = {g.name: g for g in eks.read_nodegroups(REGION, cluster) or []}
    assert groups["ng-cilium"].desired == 3
    assert groups["ng-cilium"].taints == (("node.cilium.io/agent-not-ready", "true", "NoSchedule"),)
    assert (groups["ng-1"].desired, groups["ng-1"].labels, groups["ng-1"].instance_type) == (
        3,
        {"team": "a"},
        "m5.large",
    )


def test_unknown_cluster_reads_as_none() -> None:
    assert eks.read_nodegroups(REGION, "no-such-cluster") is None


def test_forget_cluster_frees_the_name(eks_server: eks.EksServer, cluster: str) -> None:
    assert eks.cluster_exists(REGION, cluster)
    eks.forget_cluster(REGION, cluster)
    assert not eks.cluster_exists(REGION, cluster)
    eks.create_cluster(eks_server.client(), name=cluster, version="1.31")
    assert eks.cluster_exists(REGION, cluster)


def test_clients_do_not_touch_the_environment(eks_server: eks.EksServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    eks_server.client().list_clusters()
    assert "AWS_ACCESS_KEY_ID" not in os.environ
