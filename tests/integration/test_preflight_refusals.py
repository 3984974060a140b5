"""Preflight refuses a cluster the migration would hurt, says what to fix, and writes nothing.

Covers, against a twin through the Airflow connections (as a task builds its clients):
- the Kubernetes connection must reach the EKS cluster named in the params (endpoint and CA of
  ``describe_cluster``); another cluster's CA is refused with both named;
- every node belongs to a listed node group: a node of another group, a self-managed or a Karpenter node
  is refused by name; Fargate and hybrid nodes are reported and left out;
- the new group's ``node.cilium.io/agent-not-ready`` taint has effect NoExecute, else the message says
  the command that fixes it;
- ENI prerequisites (prefix delegation, ENIConfig objects), cilium-operator's EC2 permissions (its node
  role without AmazonEKS_CNI_Policy) and a running Karpenter are refused with their message, and accepted
  with their override (Cilium's own value, ``accept_eni_differences``, ``check_operator_iam``,
  ``autoscaler``);
- no refusal wrote anything: every request the checks made was a read.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from cilium_migration import preflight
from cilium_migration.clients import Clients
from cilium_migration.errors import PermanentError
from cilium_migration.spec import MigrationSpec
from tests.integration.conftest import connected_twin
from twin import eks
from twin.cluster import Twin
from twin.resources import BY_KEY, DAEMONSETS, DEPLOYMENTS, NODES

PARAMS = {"cluster_name": "dc-migrate", "region": "us-west-1"}
ENICONFIGS = BY_KEY["eniconfigs.crd.k8s.amazonaws.com"]
OTHER_CA = b"-----BEGIN CERTIFICATE-----\nTUlJQm90aGVyIGNsdXN0ZXI=\n-----END CERTIFICATE-----\n"


@pytest.fixture(scope="module")
def twin() -> Iterator[Twin]:
    with connected_twin() as t:
        yield t


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


# ---- ENI prerequisites, cilium-operator's EC2 permissions, autoscalers ---------------------------------
# (the rules themselves: tests/unit/test_prerequisites.py; here: read from a real twin, refused with their
# message and nothing written to either API, accepted with their override)

AWS_READS = ("Describe", "List", "Get")


def refuse_reading(twin: Twin, clients: Clients, spec: MigrationSpec, match: str) -> str:
    """``refuse``, and no AWS request of the check was a write either."""
    start = len(twin.eks.request_log)
    message = refuse(twin, clients, spec, match)
    writes = [r.iam_action for r in twin.eks.request_log[start:] if not r.action.startswith(AWS_READS)]
    assert not writes, f"preflight called {writes}"
    return message


def aws_node_container(ds: dict) -> dict:
    return ds["spec"]["template"]["spec"]["containers"][0]


def set_aws_node_env(twin: Twin, env: list[dict]) -> None:
    def change(ds: dict) -> None:
        aws_node_container(ds)["env"] = copy.deepcopy(env)
    twin.store.mutate(DAEMONSETS, "kube-system", "aws-node", change)


@contextmanager
def aws_node_env(twin: Twin, name: str, value: str) -> Iterator[None]:
    """aws-node's container with ``name=value`` in its env, then its env exactly as it was."""
    before = aws_node_container(twin.store.must_get(DAEMONSETS, "kube-system", "aws-node"))["env"]
    set_aws_node_env(twin, [{**e, "value": value} if e["name"] == name else e for e in before])
    try:
        yield
    finally:
        set_aws_node_env(twin, before)


def test_prefix_delegation_without_ciliums_is_refused_with_the_value_to_set(twin: Twin, clients: Clients,
                                                                             spec: MigrationSpec) -> None:
    with aws_node_env(twin, "ENABLE_PREFIX_DELEGATION", "true"):
        message = refuse_reading(twin, clients, spec, "aws-node runs with ENABLE_PREFIX_DELEGATION=true")
        assert '{"eni": {"awsEnablePrefixDelegation": true}}' in message
        assert 'accept_eni_differences ["prefix_delegation"]' in message


@pytest.mark.parametrize(("params", "line"), [
    pytest.param({"cilium_values": {"eni": {"awsEnablePrefixDelegation": True}}},
                 "prefix delegation: on in aws-node and in Cilium", id="cilium-does-it-too"),
    pytest.param({"accept_eni_differences": ["prefix_delegation"]},
                 "prefix delegation: on in aws-node, off in Cilium: accepted", id="accepted"),
])
def test_prefix_delegation_is_accepted_with_ciliums_value_or_the_override(twin: Twin, clients: Clients,
                                                                          params: dict, line: str) -> None:
    with aws_node_env(twin, "ENABLE_PREFIX_DELEGATION", "true"):
        verified = preflight.check(clients, MigrationSpec.from_params({**PARAMS, **params}))
        assert any(v.startswith(line) for v in verified), verified


ENICONFIG = {"apiVersion": "crd.k8s.amazonaws.com/v1alpha1", "kind": "ENIConfig",
             "metadata": {"name": "us-west-1a"},
             "spec": {"subnet": "subnet-0f00d0000000000a1", "securityGroups": ["sg-0f00d0000000000a1"]}}


def test_eniconfig_objects_are_refused_by_name_and_accepted_with_the_override(twin: Twin, clients: Clients,
                                                                             spec: MigrationSpec) -> None:
    twin.store.create(ENICONFIGS, dict(ENICONFIG))
    try:
        message = refuse_reading(twin, clients, spec, "custom networking is on")
        assert "ENIConfig us-west-1a (subnet subnet-0f00d0000000000a1" in message
        assert "eni.nodeSpec.subnetTags" in message
        accepted = MigrationSpec.from_params({**PARAMS, "accept_eni_differences": ["custom_networking"]})
        assert any(line.startswith("custom networking (ENIConfig us-west-1a") and "accepted" in line
                   for line in preflight.check(clients, accepted))
    finally:
        twin.store.delete(ENICONFIGS, None, "us-west-1a")


def test_a_node_role_without_the_cni_policy_is_refused_naming_the_actions(twin: Twin, clients: Clients,
                                                                         spec: MigrationSpec) -> None:
    iam = twin.boto3_client("iam")
    role, policy = "dc-migrate-nodegroup-role", "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy"
    iam.detach_role_policy(RoleName=role, PolicyArn=policy)
    try:
        message = refuse_reading(twin, clients, spec, "cilium-operator's node role of ng-cilium")
        for action in ("ec2:CreateNetworkInterface", "ec2:AttachNetworkInterface",
                       "ec2:AssignPrivateIpAddresses"):
            assert action in message
        assert "ec2:DescribeVpcs" not in message  # AmazonEKSWorkerNodePolicy still grants it
        unchecked = MigrationSpec.from_params({**PARAMS, "check_operator_iam": False})
        assert ("cilium-operator's EC2 permissions: not checked (check_operator_iam is false)"
                in preflight.check(clients, unchecked))
    finally:
        iam.attach_role_policy(RoleName=role, PolicyArn=policy)


def add_karpenter(twin: Twin) -> None:
    labels = {"app.kubernetes.io/name": "karpenter", "app.kubernetes.io/instance": "karpenter"}
    twin.store.create(DEPLOYMENTS, {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "karpenter", "namespace": "kube-system", "labels": labels},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "controller",
                                     "image": "public.ecr.aws/karpenter/controller:1.1.1"}]}}}})


def test_karpenter_running_is_refused_with_what_to_do(twin: Twin, clients: Clients,
                                                      spec: MigrationSpec) -> None:
    add_karpenter(twin)
    try:
        message = refuse_reading(twin, clients, spec, r"Karpenter runs \(Deployment kube-system/karpenter\)")
        assert "spec.disruption.budgets" in message and 'set autoscaler to "acknowledged"' in message
    finally:
        twin.store.delete(DEPLOYMENTS, "kube-system", "karpenter")


def test_karpenter_is_accepted_when_acknowledged(twin: Twin, clients: Clients) -> None:
    add_karpenter(twin)
    try:
        acknowledged = MigrationSpec.from_params({**PARAMS, "autoscaler": "acknowledged"})
        verified = preflight.check(clients, acknowledged)
        assert any(line.startswith("Karpenter runs (Deployment kube-system/karpenter): acknowledged")
                   for line in verified)
    finally:
        twin.store.delete(DEPLOYMENTS, "kube-system", "karpenter")
