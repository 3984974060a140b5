"""ENI prerequisites and autoscalers: each rule refuses with what to fix, and each override accepts.

Covers, on plain objects (no API):
- prefix delegation in aws-node: refused with Cilium's ``eni.awsEnablePrefixDelegation``; passes when the
  values set it or ``accept_eni_differences`` names it;
- custom networking (the env flag, ENIConfig objects): refused naming the ENIConfigs' subnets and Cilium's
  ``eni.nodeSpec`` values; passes when the values choose subnets, or when accepted;
- security groups for pods: refused with Cilium's nearest equivalents; passes only when accepted;
- cilium-operator's EC2 permissions: the node role's or IRSA role's policies must allow Cilium's required
  actions (wildcards, NotAction, unconditional Deny); missing ones named; features add actions; an unreadable
  role is refused with the fix; ``check_operator_iam: false`` and ENI mode off skip it;
- Cluster Autoscaler (by image or label) and Karpenter (Deployment, or its API served with none) refused
  until ``autoscaler: acknowledged``; a Deployment scaled to 0 is not running;
- reading a role's policies: attached (default version) and inline, NoSuchEntity and AccessDenied become
  reasons, other errors propagate;
- the params: bad values refused naming the field.
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from cilium_migration import prerequisites as pre
from cilium_migration.errors import PermanentError
from cilium_migration.spec import MigrationSpec

BASE = {"cluster_name": "dc-migrate", "region": "us-west-1"}
NODE_ROLE = "arn:aws:iam::123456789012:role/dc-migrate-nodegroup-role"
# AmazonEKS_CNI_Policy and AmazonEKSWorkerNodePolicy as AWS publishes them, and what Cilium needs beyond
CNI_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Resource": "*", "Action": [
        "ec2:AssignPrivateIpAddresses", "ec2:AttachNetworkInterface", "ec2:CreateNetworkInterface",
        "ec2:DeleteNetworkInterface", "ec2:DescribeInstances", "ec2:DescribeTags",
        "ec2:DescribeNetworkInterfaces", "ec2:DescribeInstanceTypes", "ec2:DescribeSubnets",
        "ec2:DescribeSecurityGroups", "ec2:DetachNetworkInterface", "ec2:ModifyNetworkInterfaceAttribute",
        "ec2:UnassignPrivateIpAddresses"]},
    {"Effect": "Allow", "Action": ["ec2:CreateTags"], "Resource": ["arn:aws:ec2:*:*:network-interface/*"]}]}
WORKER_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*", "Action": [
    "ec2:DescribeInstances", "ec2:DescribeInstanceTypes", "ec2:DescribeRouteTables",
    "ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVolumes", "ec2:DescribeVpcs",
    "eks:DescribeCluster"]}]}
CILIUM_EXTRA = {"Statement": {"Effect": "Allow", "Resource": "*", "Action": [
    "ec2:DescribeManagedPrefixLists", "ec2:GetManagedPrefixListEntries"]}}


def spec(**params: Any) -> MigrationSpec:
    return MigrationSpec.from_params({**BASE, **params})


def values(s: MigrationSpec) -> dict[str, Any]:
    return pre.effective_values(s)


def aws_node(**env: str) -> dict[str, Any]:
    return {"spec": {"template": {"spec": {"containers": [
        {"name": "aws-node", "env": [{"name": k, "value": v} for k, v in env.items()]
         + [{"name": "MY_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]}]}}}}


def deployment(name: str, namespace: str = "kube-system", *, image: str = "nginx:1.27",
               labels: dict[str, str] | None = None, replicas: int | None = 1) -> dict[str, Any]:
    template = {"metadata": {"labels": labels or {}},
                "spec": {"containers": [{"name": name, "image": image}]}}
    return {"metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
            "spec": {"replicas": replicas, "template": template}}


def node_role(*documents: dict[str, Any]) -> pre.OperatorIdentity:
    return pre.OperatorIdentity(NODE_ROLE, "node role of ng-cilium",
                                tuple((f"policy-{i}", d) for i, d in enumerate(documents)))


# ---- aws-node's env ------------------------------------------------------------------------------------

def test_only_literal_env_values_are_read() -> None:
    env = pre.container_env(aws_node(ENABLE_PREFIX_DELEGATION="true"))
    assert env == {"ENABLE_PREFIX_DELEGATION": "true"}
    assert pre.container_env(None) == {}


# ---- prefix delegation -----------------------------------------------------------------------------

def test_prefix_delegation_without_ciliums_is_refused_with_the_value_to_set() -> None:
    s = spec()
    verdict = pre.prefix_delegation(s, {"ENABLE_PREFIX_DELEGATION": "true"}, values(s))
    assert "ENABLE_PREFIX_DELEGATION=true" in verdict.problem
    assert '{"eni": {"awsEnablePrefixDelegation": true}}' in verdict.problem
    assert 'accept_eni_differences ["prefix_delegation"]' in verdict.problem and not verdict.ok


@pytest.mark.parametrize("params", [
    pytest.param({"cilium_values": {"eni": {"awsEnablePrefixDelegation": True}}}, id="cilium-does-it-too"),
    pytest.param({"accept_eni_differences": ["prefix_delegation"]}, id="accepted"),
])
def test_prefix_delegation_passes_with_ciliums_value_or_its_override(params: dict[str, Any]) -> None:
    s = spec(**params)
    verdict = pre.prefix_delegation(s, {"ENABLE_PREFIX_DELEGATION": "true"}, values(s))
    assert verdict.ok and not verdict.problem


def test_prefix_delegation_off_passes() -> None:
    s = spec()
    assert pre.prefix_delegation(s, {"ENABLE_PREFIX_DELEGATION": "false"}, values(s)).ok == \
        "prefix delegation: off in aws-node"


# ---- custom networking ------------------------------------------------------------------------------

ENICONFIG = {"metadata": {"name": "us-west-1a"},
             "spec": {"subnet": "subnet-0pods1a", "securityGroups": ["sg-0pods"]}}


def test_custom_networking_by_env_is_refused_with_ciliums_values() -> None:
    s = spec()
    verdict = pre.custom_networking(s, {"AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG": "true"}, [], values(s))
    assert "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG=true" in verdict.problem
    fixes = ("eni.nodeSpec.firstInterfaceIndex: 1", "eni.nodeSpec.subnetTags", "eni.nodeSpec.securityGroups",
             "cni.customConf", 'accept_eni_differences ["custom_networking"]')
    for fix in fixes:
        assert fix in verdict.problem


def test_eniconfig_objects_are_refused_by_name_with_their_subnet() -> None:
    s = spec()
    verdict = pre.custom_networking(s, {}, [ENICONFIG], values(s))
    assert "ENIConfig us-west-1a (subnet subnet-0pods1a, security groups sg-0pods)" in verdict.problem


@pytest.mark.parametrize("params", [
    pytest.param({"cilium_values": {"eni": {"nodeSpec": {"subnetTags": ["pods=true"],
                                                         "firstInterfaceIndex": 1}}}}, id="node-spec"),
    pytest.param({"cilium_values": {"eni": {"subnetIDsFilter": ["subnet-0pods1a"]}}}, id="subnet-filter"),
    pytest.param({"cilium_values": {"cni": {"customConf": True, "configMap": "cni-configuration"}}},
                 id="custom-cni-config"),
    pytest.param({"accept_eni_differences": ["custom_networking"]}, id="accepted"),
])
def test_custom_networking_passes_when_cilium_chooses_subnets_or_accepted(params: dict[str, Any]) -> None:
    s = spec(**params)
    verdict = pre.custom_networking(s, {"AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG": "true"}, [ENICONFIG], values(s))
    assert verdict.ok and not verdict.problem


# ---- security groups for pods -----------------------------------------------------------------------

def test_security_groups_for_pods_is_refused_with_ciliums_nearest_equivalents() -> None:
    verdict = pre.security_groups_for_pods(spec(), {"ENABLE_POD_ENI": "true"})
    assert "ENABLE_POD_ENI=true" in verdict.problem and "SecurityGroupPolicy" in verdict.problem
    assert "eni.nodeSpec.securityGroups" in verdict.problem and "CiliumNetworkPolicy" in verdict.problem
    assert 'accept_eni_differences ["security_groups_for_pods"]' in verdict.problem


def test_security_groups_for_pods_passes_only_when_accepted() -> None:
    s = spec(accept_eni_differences=["security_groups_for_pods"])
    assert pre.security_groups_for_pods(s, {"ENABLE_POD_ENI": "true"}).ok
    assert pre.security_groups_for_pods(spec(), {"ENABLE_POD_ENI": "false"}).ok


# ---- cilium-operator's EC2 permissions -------------------------------------------------------------

def test_a_node_role_with_ekss_policies_and_ciliums_extras_passes() -> None:
    s = spec()
    verdict = pre.operator_permissions(s, node_role(CNI_POLICY, WORKER_POLICY, CILIUM_EXTRA), values(s))
    assert NODE_ROLE in verdict.ok and not verdict.problem


def test_missing_actions_are_refused_by_name_with_the_ways_out() -> None:
    s = spec()
    verdict = pre.operator_permissions(s, node_role(CNI_POLICY), values(s))
    for action in ("ec2:DescribeVpcs", "ec2:DescribeRouteTables", "ec2:DescribeManagedPrefixLists"):
        assert action in verdict.problem
    assert "ec2:CreateNetworkInterface" not in verdict.problem
    assert f"node role of ng-cilium ({NODE_ROLE})" in verdict.problem
    assert "eks.amazonaws.com/role-arn" in verdict.problem
    assert "check_operator_iam to false" in verdict.problem


@pytest.mark.parametrize(("statement", "missing"), [
    pytest.param({"Effect": "Allow", "Action": "ec2:*", "Resource": "*"}, [], id="wildcard"),
    pytest.param({"Effect": "Allow", "Action": ["EC2:describe*", "ec2:*NetworkInterface*",
                                                "ec2:AssignPrivateIpAddresses", "ec2:CreateTags",
                                                "ec2:GetManagedPrefixListEntries"], "Resource": "*"},
                 [], id="patterns-case-insensitive"),
    pytest.param({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}, [], id="not-action"),
    pytest.param({"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"},
                 ["ec2:CreateNetworkInterface", "ec2:AttachNetworkInterface", "ec2:DeleteNetworkInterface",
                  "ec2:ModifyNetworkInterfaceAttribute", "ec2:AssignPrivateIpAddresses", "ec2:CreateTags",
                  "ec2:GetManagedPrefixListEntries"], id="reads-only"),
])
def test_action_matching_follows_iam(statement: dict[str, Any], missing: list[str]) -> None:
    assert pre.missing_actions([{"Statement": [statement]}], pre.OPERATOR_EC2_ACTIONS) == missing


def test_an_unconditional_deny_takes_an_action_away_and_a_conditional_one_does_not() -> None:
    allow = {"Effect": "Allow", "Action": "ec2:*", "Resource": "*"}
    deny = {"Effect": "Deny", "Action": "ec2:DeleteNetworkInterface", "Resource": "*"}
    assert pre.missing_actions([{"Statement": [allow, deny]}], pre.OPERATOR_EC2_ACTIONS) == [
        "ec2:DeleteNetworkInterface"]
    conditional = {**deny, "Condition": {"StringEquals": {"aws:RequestedRegion": "eu-west-1"}}}
    assert pre.missing_actions([{"Statement": [allow, conditional]}], pre.OPERATOR_EC2_ACTIONS) == []


def test_enabled_features_require_more_actions() -> None:
    s = spec(cilium_values={"eni": {"awsReleaseExcessIPs": True, "instanceTagsFilter": ["team=a"]},
                            "ipv6": {"enabled": True}, "cluster": {"name": "default"}})
    required = pre.required_ec2_actions(values(s))
    for action in ("ec2:UnassignPrivateIpAddresses", "ec2:DescribeInstances", "ec2:AssignIpv6Addresses",
                   "ec2:DescribeTags"):
        assert action in required
    assert "ec2:DescribeTags" not in pre.required_ec2_actions(values(spec()))  # cluster.name is set


@pytest.mark.parametrize(("cilium_values", "source"), [
    pytest.param({"serviceAccounts": {"operator": {"annotations": {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/cilium-operator"}}}},
        "IRSA role (cilium_values serviceAccounts.operator.annotations)", id="annotation"),
    pytest.param({"eni": {"iamRole": "arn:aws:iam::123456789012:role/cilium-operator"}},
                 "IRSA role (cilium_values eni.iamRole)", id="eni-iam-role"),
])
def test_the_operators_irsa_role_comes_from_the_values(cilium_values: dict[str, Any], source: str) -> None:
    assert pre.operator_role_in_values(values(spec(cilium_values=cilium_values))) == (
        "arn:aws:iam::123456789012:role/cilium-operator", source)
    assert pre.operator_role_in_values(values(spec())) is None


def test_an_unreadable_role_is_refused_with_the_reason_and_the_override() -> None:
    s = spec()
    identity = pre.OperatorIdentity(NODE_ROLE, "node role of ng-cilium", unreadable="IAM has no role x")
    verdict = pre.operator_permissions(s, identity, values(s))
    assert "cannot check the EC2 permissions" in verdict.problem and "IAM has no role x" in verdict.problem
    assert "check_operator_iam to false" in verdict.problem


@pytest.mark.parametrize(("params", "line"), [
    pytest.param({"check_operator_iam": False}, "not checked (check_operator_iam is false)", id="override"),
    pytest.param({"cilium_values": {"eni": {"enabled": False}, "ipam": {"mode": "cluster-pool"}}},
                 "not needed (ENI mode is off", id="eni-off"),
])
def test_the_permissions_check_is_skipped_by_its_param_or_without_eni_mode(params: dict[str, Any],
                                                                          line: str) -> None:
    s = spec(**params)
    verdict = pre.operator_permissions(s, node_role(), values(s))
    assert line in verdict.ok and not verdict.problem


# ---- autoscalers ---------------------------------------------------------------------------------

CA_IMAGE = "registry.k8s.io/autoscaling/cluster-autoscaler:v1.30.2"


@pytest.mark.parametrize("deploy", [
    pytest.param(deployment("cluster-autoscaler", image=CA_IMAGE), id="image"),
    pytest.param(deployment("ca", labels={"app.kubernetes.io/name": "aws-cluster-autoscaler"}),
                 id="chart-label"),
    pytest.param(deployment("ca", labels={"app": "cluster-autoscaler"}), id="app-label"),
])
def test_a_running_cluster_autoscaler_is_refused_with_what_to_do(deploy: dict[str, Any]) -> None:
    verdict = pre.cluster_autoscaler(spec(), [deployment("web", "default"), deploy])
    assert f"Deployment kube-system/{deploy['metadata']['name']}" in verdict.problem
    for fix in ("ng-1, ng-cilium", "--replicas=0", "k8s.io/cluster-autoscaler/enabled", "--nodes",
                'autoscaler to "acknowledged"'):
        assert fix in verdict.problem


def test_a_cluster_autoscaler_scaled_to_0_or_acknowledged_passes() -> None:
    stopped = deployment("cluster-autoscaler", image=CA_IMAGE, replicas=0)
    assert "scaled to 0" in pre.cluster_autoscaler(spec(), [stopped]).ok
    running = deployment("cluster-autoscaler", image=CA_IMAGE)
    verdict = pre.cluster_autoscaler(spec(autoscaler="acknowledged"), [running])
    assert "acknowledged" in verdict.ok and not verdict.problem


@pytest.mark.parametrize(("deploys", "groups", "where"), [
    pytest.param([deployment("karpenter", "karpenter")], frozenset({"karpenter.sh"}),
                 "Deployment karpenter/karpenter", id="deployment"),
    pytest.param([deployment("controller", image="public.ecr.aws/karpenter/controller:1.1.0")], frozenset(),
                 "Deployment kube-system/controller", id="image"),
    pytest.param([], frozenset({"karpenter.sh"}), "EKS Auto Mode", id="api-served-without-deployment"),
])
def test_karpenter_is_refused_with_what_to_do(deploys: list[dict[str, Any]], groups: frozenset[str],
                                              where: str) -> None:
    verdict = pre.karpenter(spec(), deploys, groups)
    assert where in verdict.problem
    for fix in ("spec.disruption.budgets", "spec.limits", 'autoscaler to "acknowledged"'):
        assert fix in verdict.problem


def test_karpenter_acknowledged_or_scaled_to_0_passes() -> None:
    running = [deployment("karpenter", "karpenter")]
    verdict = pre.karpenter(spec(autoscaler="acknowledged"), running, frozenset())
    assert "acknowledged" in verdict.ok and not verdict.problem
    scaled_down = [deployment("karpenter", "karpenter", replicas=0)]
    stopped = pre.karpenter(spec(), scaled_down, frozenset({"karpenter.sh"}))
    assert "scaled to 0" in stopped.ok and not stopped.problem
    assert pre.karpenter(spec(), [], frozenset()).ok == "no Karpenter running"


# ---- all rules together -----------------------------------------------------------------------------

def test_evaluate_collects_every_problem() -> None:
    found = pre.Found({"ENABLE_PREFIX_DELEGATION": "true", "ENABLE_POD_ENI": "true"}, (ENICONFIG,),
                      (deployment("karpenter", "karpenter"),), frozenset(), node_role(CNI_POLICY))
    ok, problems = pre.evaluate(spec(), found)
    assert len(problems) == 5 and not any("Cluster Autoscaler" in p for p in problems)
    assert "no Cluster Autoscaler running" in ok


def test_evaluate_leaves_the_eni_rules_out_without_eni_mode() -> None:
    s = spec(cilium_values={"eni": {"enabled": False}, "ipam": {"mode": "cluster-pool"}})
    ok, problems = pre.evaluate(s, pre.Found({"ENABLE_PREFIX_DELEGATION": "true", "ENABLE_POD_ENI": "true"}))
    assert problems == [] and "ENI prerequisites: not checked (ENI mode is off in cilium_values)" in ok


# ---- reading a role's policies --------------------------------------------------------------------------

class FakeIam:
    """The IAM reads ``read_role_policies`` makes, answered from data (or raising ``error``)."""

    def __init__(self, attached: dict[str, dict[str, Any]], inline: dict[str, Any],
                 error: str | None = None) -> None:
        self.attached, self.inline, self.error = attached, inline, error

    def get_paginator(self, name: str) -> Any:
        def paginate(**_: Any) -> list[dict[str, Any]]:
            self._raise()
            if name == "list_attached_role_policies":
                return [{"AttachedPolicies": [{"PolicyName": a.rsplit("/", 1)[-1], "PolicyArn": a}
                                              for a in self.attached]}]
            return [{"PolicyNames": list(self.inline)}]
        return type("Paginator", (), {"paginate": staticmethod(paginate)})()

    def _raise(self) -> None:
        if self.error:
            raise ClientError({"Error": {"Code": self.error, "Message": "denied or missing"}}, "Op")

    def get_policy(self, PolicyArn: str) -> dict[str, Any]:  # noqa: N803 - boto3's names
        return {"Policy": {"DefaultVersionId": "v3"}}

    def get_policy_version(self, PolicyArn: str, VersionId: str) -> dict[str, Any]:  # noqa: N803
        assert VersionId == "v3"
        return {"PolicyVersion": {"Document": self.attached[PolicyArn]}}

    def get_role_policy(self, RoleName: str, PolicyName: str) -> dict[str, Any]:  # noqa: N803
        return {"PolicyDocument": self.inline[PolicyName]}


def test_a_roles_attached_and_inline_policies_are_read() -> None:
    iam = FakeIam({"arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy": CNI_POLICY},
                  {"cilium": "%7B%22Statement%22%3A%20%5B%5D%7D"})  # URL-encoded JSON, as IAM's API sends it
    arn = "arn:aws:iam::123456789012:role/some/path/dc-migrate-nodegroup-role"
    documents, why = pre.read_role_policies(iam, arn)
    assert why == "" and documents == (("AmazonEKS_CNI_Policy", CNI_POLICY), ("cilium", {"Statement": []}))


@pytest.mark.parametrize(("code", "why"), [
    pytest.param("NoSuchEntity", "IAM has no role dc-migrate-nodegroup-role", id="no-role"),
    pytest.param("AccessDenied", "grant it iam:ListAttachedRolePolicies", id="denied"),
])
def test_a_missing_or_forbidden_role_becomes_a_reason(code: str, why: str) -> None:
    documents, reason = pre.read_role_policies(FakeIam({}, {}, error=code), NODE_ROLE)
    assert documents == () and why in reason


def test_other_iam_errors_propagate() -> None:
    with pytest.raises(ClientError):
        pre.read_role_policies(FakeIam({}, {}, error="Throttling"), NODE_ROLE)


# ---- params -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "value"), [
    pytest.param("accept_eni_differences", ["prefix-delegation"], id="unknown-difference"),
    pytest.param("accept_eni_differences", {"prefix_delegation": True}, id="not-a-list"),
    pytest.param("autoscaler", "ignore", id="unknown-autoscaler-mode"),
    pytest.param("check_operator_iam", "no", id="iam-check-string"),
])
def test_bad_override_values_are_refused_naming_the_field(name: str, value: Any) -> None:
    with pytest.raises(PermanentError, match=f"^{name}:"):
        spec(**{name: value})


def test_override_defaults_refuse_and_check() -> None:
    s = spec()
    assert (s.accept_eni_differences, s.check_operator_iam, s.autoscaler) == ((), True, "refuse")
    assert spec(accept_eni_differences="custom_networking").accept_eni_differences == ("custom_networking",)
