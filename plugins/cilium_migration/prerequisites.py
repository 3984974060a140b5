"""What Cilium's ENI mode needs of the cluster, and who else scales its nodes: rules preflight applies.

Each rule is a pure function over objects read once (``read``) and gives a ``Verdict``: a line for what was
verified, or a problem that says what to fix and which param accepts it. Rules:
- Prefix delegation: aws-node's ``ENABLE_PREFIX_DELEGATION=true`` needs Cilium's own
  ``eni.awsEnablePrefixDelegation: true`` in the values; otherwise refused unless
  ``accept_eni_differences`` holds ``prefix_delegation``.
- Custom networking: ``AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG=true`` or ENIConfig objects. Cilium does not read
  ENIConfigs: accepted when the values choose the subnets of Cilium's ENIs (``eni.nodeSpec.subnetIDs`` or
  ``subnetTags``, ``eni.subnetIDsFilter`` or ``subnetTagsFilter``, or a custom CNI configuration), or with
  ``custom_networking``.
- Security groups for pods: ``ENABLE_POD_ENI=true``. Cilium has no per-pod security groups: accepted only
  with ``security_groups_for_pods``.
- EC2 permissions of cilium-operator (it alone calls EC2 in ENI mode): its IRSA role from the values
  (``serviceAccounts.operator.annotations["eks.amazonaws.com/role-arn"]`` or ``eni.iamRole``), else the new
  node group's node role, must allow every action of Cilium's "Required Privileges" list in one of its
  attached or inline policies. Only what IAM shows is judged: conditions, resource scopes, permission
  boundaries and SCPs are not evaluated, so a refusal names actions that are visibly missing.
  ``check_operator_iam: false`` skips the check (EKS Pod Identity, a role in another account).
- Autoscalers: a running Cluster Autoscaler (a Deployment by image or label) or Karpenter (a Deployment,
  or the ``karpenter.sh`` API served with none: EKS Auto Mode) is refused until ``autoscaler`` is
  ``acknowledged``. A Deployment scaled to 0 is not running.
- With ENI mode switched off in the values, the ENI rules and the EC2 check do not apply.

Requests (read-only, a constant number): aws-node is passed in (preflight reads it); one list of
Deployments in all namespaces; ``/apis`` once; one list of ENIConfigs when their group is served; IAM: the
role's attached and inline policy lists, then each policy's document (two reads per managed policy, at
most 20 by IAM's quota, one per inline policy).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from cilium_migration.clients import Clients, items, read_json
from cilium_migration.errors import error_code, error_message, is_not_found
from cilium_migration.readiness import labels_of, name_of
from cilium_migration.spec import MigrationSpec

Obj = Mapping[str, Any]

PREFIX_DELEGATION = "prefix_delegation"
CUSTOM_NETWORKING = "custom_networking"
SECURITY_GROUPS_FOR_PODS = "security_groups_for_pods"
ACKNOWLEDGED = "acknowledged"

ENICONFIG_GROUP = "crd.k8s.amazonaws.com"
ENICONFIG_PLURAL = "eniconfigs"
KARPENTER_GROUP = "karpenter.sh"
IRSA_ANNOTATION = "eks.amazonaws.com/role-arn"
CLUSTER_AUTOSCALER_NAMES = frozenset({"cluster-autoscaler", "aws-cluster-autoscaler"})

# Cilium's ENI IPAM, "Required Privileges" (docs.cilium.io/en/stable/network/concepts/ipam/eni/):
# what cilium-operator calls in every ENI-mode cluster.
OPERATOR_EC2_ACTIONS: tuple[str, ...] = (
    "ec2:CreateNetworkInterface", "ec2:AttachNetworkInterface", "ec2:DeleteNetworkInterface",
    "ec2:ModifyNetworkInterfaceAttribute", "ec2:AssignPrivateIpAddresses", "ec2:CreateTags",
    "ec2:DescribeNetworkInterfaces", "ec2:DescribeInstanceTypes", "ec2:DescribeSubnets", "ec2:DescribeVpcs",
    "ec2:DescribeRouteTables", "ec2:DescribeSecurityGroups", "ec2:DescribeManagedPrefixLists",
    "ec2:GetManagedPrefixListEntries",
)
IAM_READS = ("iam:ListAttachedRolePolicies", "iam:GetPolicy", "iam:GetPolicyVersion", "iam:ListRolePolicies",
             "iam:GetRolePolicy")


@dataclass(frozen=True)
class Verdict:
    """One rule's outcome: ``ok`` (what was verified) or ``problem`` (what to fix), or neither."""

    ok: str = ""
    problem: str = ""


@dataclass(frozen=True)
class OperatorIdentity:
    """The IAM role cilium-operator calls EC2 with, and its policy documents as IAM shows them."""

    role_arn: str
    source: str  # where the DAG found it: "IRSA role (cilium_values eni.iamRole)", "node role of ng-cilium"
    documents: tuple[tuple[str, Obj], ...] = ()  # (policy name, policy document)
    unreadable: str = ""  # why the policies could not be read ("" when they were)


@dataclass(frozen=True)
class Found:
    """What the rules look at, read once."""

    aws_node_env: Mapping[str, str]
    eniconfigs: tuple[Obj, ...] = ()
    deployments: tuple[Obj, ...] = ()
    api_groups: frozenset[str] = frozenset()
    operator: OperatorIdentity | None = None  # None: not checked (see ``operator_permissions``)


# ---- values and aws-node ------------------------------------------------------------------------------

def effective_values(spec: MigrationSpec) -> dict[str, Any]:
    """The Helm values the run installs: its strategy's, adapted, with ``cilium_values`` merged over them."""
    from cilium_migration import cilium

    return cilium.strategy_values(in_place=spec.in_place, cluster_name=spec.cluster_name, region=spec.region,
                                  egress_interface=spec.egress_masquerade_interface, overrides=spec.cilium_values)


def value_at(values: Obj, *path: str) -> Any:
    """``values[path[0]][path[1]]...``, or None where a level is missing or not a map."""
    node: Any = values
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def _true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def eni_mode(values: Obj) -> bool:
    """Cilium's ENI IPAM is on: ``eni.enabled`` or ``ipam.mode: eni``."""
    return _true(value_at(values, "eni", "enabled")) or value_at(values, "ipam", "mode") == "eni"


def container_env(ds: Obj | None) -> dict[str, str]:
    """The literal env values of the DaemonSet's containers (``valueFrom`` entries are left out)."""
    spec = (((ds or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
    env: dict[str, str] = {}
    for container in spec.get("containers") or []:
        for var in container.get("env") or []:
            if "value" in var and var.get("name") not in env:
                env[str(var["name"])] = str(var["value"])
    return env


# ---- ENI prerequisites ----------------------------------------------------------------------------------

def prefix_delegation(spec: MigrationSpec, env: Mapping[str, str], values: Obj) -> Verdict:
    """aws-node's prefix delegation needs Cilium's ``eni.awsEnablePrefixDelegation``, or acceptance."""
    if not _true(env.get("ENABLE_PREFIX_DELEGATION")):
        return Verdict(ok="prefix delegation: off in aws-node")
    if _true(value_at(values, "eni", "awsEnablePrefixDelegation")):
        return Verdict(ok="prefix delegation: on in aws-node and in Cilium (eni.awsEnablePrefixDelegation)")
    if PREFIX_DELEGATION in spec.accept_eni_differences:
        return Verdict(ok="prefix delegation: on in aws-node, off in Cilium: accepted "
                          "(accept_eni_differences)")
    return Verdict(problem=(
        "aws-node runs with ENABLE_PREFIX_DELEGATION=true (pods take addresses from /28 prefixes, so a node "
        "holds many more pods), but Cilium's ENI IPAM would assign single secondary IPs: the new nodes would "
        "run out of pod addresses (an m5.large holds 29 pods instead of 110). Set cilium_values "
        '{"eni": {"awsEnablePrefixDelegation": true}} (Cilium then assigns /28 prefixes on Nitro instances), '
        f'or accept secondary IPs with accept_eni_differences ["{PREFIX_DELEGATION}"]'))


SUBNET_CHOICES = (("eni", "nodeSpec", "subnetIDs"), ("eni", "nodeSpec", "subnetTags"),
                  ("eni", "subnetIDsFilter"), ("eni", "subnetTagsFilter"))


def cilium_subnet_choice(values: Obj) -> list[str]:
    """The values that choose the subnets of Cilium's ENIs, as ``key=value`` strings; [] when none do."""
    chosen = [f"{'.'.join(path)}={json.dumps(value_at(values, *path))}"
              for path in SUBNET_CHOICES if value_at(values, *path)]
    if _true(value_at(values, "cni", "customConf")):
        chosen.append(f"cni.customConf=true (cni.configMap={value_at(values, 'cni', 'configMap')})")
    return chosen


def _eniconfig_summary(config: Obj) -> str:
    spec = config.get("spec") or {}
    groups = ", ".join(spec.get("securityGroups") or []) or "the node's"
    return f"{name_of(config)} (subnet {spec.get('subnet', '?')}, security groups {groups})"


def custom_networking(spec: MigrationSpec, env: Mapping[str, str], eniconfigs: Iterable[Obj],
                      values: Obj) -> Verdict:
    """Custom networking (the env flag or ENIConfig objects) needs Cilium's own subnet choice, or
    acceptance."""
    configs = sorted(eniconfigs, key=name_of)
    flag = _true(env.get("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG"))
    if not flag and not configs:
        return Verdict(ok="custom networking: off (no AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG, no ENIConfig)")
    why = ", ".join(["aws-node AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG=true"] * flag
                    + [f"ENIConfig {_eniconfig_summary(c)}" for c in configs[:10]])
    chosen = cilium_subnet_choice(values)
    if chosen:
        return Verdict(ok=f"custom networking ({why}): Cilium's ENI subnets are set in cilium_values: "
                          f"{'; '.join(chosen)}")
    if CUSTOM_NETWORKING in spec.accept_eni_differences:
        return Verdict(ok=f"custom networking ({why}): pods in the nodes' subnets accepted "
                          "(accept_eni_differences)")
    return Verdict(problem=(
        f"custom networking is on ({why}): the VPC CNI puts pods on secondary ENIs in the ENIConfigs' "
        "subnets and security groups, and Cilium does not read ENIConfig objects, so its pods would take "
        "addresses from the nodes' own subnets. Give Cilium the same choice in cilium_values: "
        "eni.nodeSpec.firstInterfaceIndex: 1 (no pods on the primary ENI), eni.nodeSpec.subnetTags (a tag "
        "the ENIConfigs' subnets share: Cilium picks the subnet in each node's zone) or "
        "eni.nodeSpec.subnetIDs, and eni.nodeSpec.securityGroups (their security groups); on charts without "
        "eni.nodeSpec, put "
        "first-interface-index, subnet-tags or subnet-ids and security-groups in the eni section of a CNI "
        "configuration ConfigMap named by cni.customConf: true and cni.configMap. Or accept pods in the "
        f'nodes\' subnets with accept_eni_differences ["{CUSTOM_NETWORKING}"]'))


def security_groups_for_pods(spec: MigrationSpec, env: Mapping[str, str]) -> Verdict:
    """Security groups for pods (``ENABLE_POD_ENI``) has no Cilium equivalent: refused unless accepted."""
    if not _true(env.get("ENABLE_POD_ENI")):
        return Verdict(ok="security groups for pods: off in aws-node")
    if SECURITY_GROUPS_FOR_PODS in spec.accept_eni_differences:
        return Verdict(ok="security groups for pods: on in aws-node, none per pod under Cilium: accepted "
                          "(accept_eni_differences)")
    return Verdict(problem=(
        "security groups for pods is on (aws-node ENABLE_POD_ENI=true): pods that a SecurityGroupPolicy "
        "selects get branch ENIs with security groups of their own, which Cilium's ENI mode does not "
        "provide: on Cilium nodes they would have the node's security groups. Cilium's nearest "
        "equivalents: security groups for all pods of a node (cilium_values eni.nodeSpec.securityGroups or "
        "eni.nodeSpec.securityGroupTags, e.g. on a dedicated node group) and CiliumNetworkPolicy (egress "
        "toGroups with aws securityGroupsIds for resources behind security groups). Move those rules first, "
        f'then set accept_eni_differences ["{SECURITY_GROUPS_FOR_PODS}"]'))


# ---- the operator's EC2 permissions ----------------------------------------------------------------

def required_ec2_actions(values: Obj) -> list[str]:
    """Cilium's "Required Privileges" for these values: the base list plus what enabled features add."""
    actions = list(OPERATOR_EC2_ACTIONS)
    gc_off = str(value_at(values, "eni", "gcInterval") or "").strip() in ("0", "0s")
    default_name = str(value_at(values, "cluster", "name") or "default") == "default"
    if not gc_off and not value_at(values, "eni", "gcTags") and default_name:
        actions.append("ec2:DescribeTags")  # ENI garbage collection finds the cluster's ENIs by tag
    if _true(value_at(values, "eni", "awsReleaseExcessIPs")):
        actions.append("ec2:UnassignPrivateIpAddresses")
    if _true(value_at(values, "ipv6", "enabled")):
        actions.append("ec2:AssignIpv6Addresses")
    if value_at(values, "eni", "instanceTagsFilter"):
        actions.append("ec2:DescribeInstances")
    return actions


def operator_role_in_values(values: Obj) -> tuple[str, str] | None:
    """(role ARN, where it is set) of cilium-operator's IRSA role in the values; None without one."""
    annotations = value_at(values, "serviceAccounts", "operator", "annotations") or {}
    if isinstance(annotations, Mapping) and annotations.get(IRSA_ANNOTATION):
        return (str(annotations[IRSA_ANNOTATION]),
                "IRSA role (cilium_values serviceAccounts.operator.annotations)")
    if value_at(values, "eni", "iamRole"):
        return str(value_at(values, "eni", "iamRole")), "IRSA role (cilium_values eni.iamRole)"
    return None


def _names(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [str(v) for v in value or []]


def _matches(pattern: str, action: str) -> bool:
    """IAM's action match: case-insensitive, ``*`` and ``?`` wildcards."""
    regex = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    return re.fullmatch(regex, action, flags=re.IGNORECASE) is not None


def _statement_covers(statement: Obj, action: str) -> bool:
    if "Action" in statement:
        return any(_matches(p, action) for p in _names(statement["Action"]))
    if "NotAction" in statement:
        return not any(_matches(p, action) for p in _names(statement["NotAction"]))
    return False


def _statements(document: Obj) -> list[Obj]:
    found = document.get("Statement") or []
    return [found] if isinstance(found, Mapping) else list(found)


def missing_actions(documents: Iterable[Obj], actions: Iterable[str]) -> list[str]:
    """The actions no Allow statement names, or that an unconditional Deny on every resource takes away."""
    statements = [s for d in documents for s in _statements(d)]
    allows = [s for s in statements if s.get("Effect") == "Allow"]
    denies = [s for s in statements if s.get("Effect") == "Deny" and "Condition" not in s
              and "*" in _names(s.get("Resource"))]
    return [a for a in actions if not any(_statement_covers(s, a) for s in allows)
            or any(_statement_covers(s, a) for s in denies)]


def operator_permissions(spec: MigrationSpec, identity: OperatorIdentity | None, values: Obj) -> Verdict:
    """cilium-operator's role must visibly allow Cilium's required EC2 actions (``check_operator_iam``)."""
    if not eni_mode(values):
        return Verdict(ok="cilium-operator's EC2 permissions: not needed (ENI mode is off in cilium_values)")
    if not spec.check_operator_iam:
        return Verdict(ok="cilium-operator's EC2 permissions: not checked (check_operator_iam is false)")
    if identity is None:
        return Verdict()  # the new node group could not be described: already a problem of its own
    who = f"cilium-operator's {identity.source} ({identity.role_arn})"
    skip = ("or, when the operator gets its AWS credentials another way (EKS Pod Identity, a role in another "
            "account), set check_operator_iam to false")
    if identity.unreadable:
        return Verdict(problem=f"cannot check the EC2 permissions of {who}: {identity.unreadable}; {skip}")
    missing = missing_actions((doc for _, doc in identity.documents), required_ec2_actions(values))
    policies = ", ".join(name for name, _ in identity.documents) or "none"
    if not missing:
        return Verdict(ok=f"{who} allows the EC2 actions of Cilium's ENI IPAM (policies: {policies})")
    return Verdict(problem=(
        f"{who} does not allow {', '.join(missing)}, which Cilium's ENI IPAM calls (docs.cilium.io, AWS ENI, "
        f"Required Privileges; policies read: {policies}): attach a policy allowing them to that role, or "
        "give the operator an IRSA role that has them (cilium_values serviceAccounts.operator.annotations "
        f'{{"{IRSA_ANNOTATION}": "<role ARN>"}}), {skip}'))


# ---- autoscalers ---------------------------------------------------------------------------------

def _image_name(image: str) -> str:
    """``registry.k8s.io/autoscaling/cluster-autoscaler:v1.30.0`` -> ``cluster-autoscaler``."""
    last = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def _template(deploy: Obj) -> Obj:
    return ((deploy.get("spec") or {}).get("template") or {})


def _all_labels(deploy: Obj) -> dict[str, str]:
    return {**labels_of(_template(deploy)), **labels_of(deploy)}


def _images(deploy: Obj) -> list[str]:
    containers = (_template(deploy).get("spec") or {}).get("containers") or []
    return [str(c.get("image") or "") for c in containers]


def is_cluster_autoscaler(deploy: Obj) -> bool:
    """A Deployment runs Cluster Autoscaler: its image is ``.../cluster-autoscaler:...`` or it is labelled
    ``app.kubernetes.io/name`` or ``app`` ``cluster-autoscaler`` (``aws-cluster-autoscaler``: its chart)."""
    labels = _all_labels(deploy)
    named = {labels.get("app.kubernetes.io/name"), labels.get("app")} & CLUSTER_AUTOSCALER_NAMES
    return bool(named) or any(_image_name(i) == "cluster-autoscaler" for i in _images(deploy))


def is_karpenter(deploy: Obj) -> bool:
    """A Deployment runs Karpenter: named or labelled ``karpenter``, or its image is Karpenter's
    controller."""
    labels = _all_labels(deploy)
    return (name_of(deploy) == "karpenter" or labels.get("app.kubernetes.io/name") == "karpenter"
            or any("/karpenter/controller" in i for i in _images(deploy)))


def replicas(deploy: Obj) -> int:
    value = (deploy.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def _where(deploys: Iterable[Obj]) -> str:
    return ", ".join(f"Deployment {(d.get('metadata') or {}).get('namespace')}/{name_of(d)}" for d in deploys)


def _groups(spec: MigrationSpec) -> str:
    return ", ".join(spec.old_nodegroups if spec.in_place else (*spec.old_nodegroups, spec.new_nodegroup))


def cluster_autoscaler(spec: MigrationSpec, deployments: Iterable[Obj]) -> Verdict:
    """A running Cluster Autoscaler is refused until ``autoscaler`` is ``acknowledged``."""
    found = [d for d in deployments if is_cluster_autoscaler(d)]
    running = [d for d in found if replicas(d) > 0]
    if not running:
        stopped = f" ({_where(found)} scaled to 0)" if found else ""
        return Verdict(ok=f"no Cluster Autoscaler running{stopped}")
    if spec.autoscaler == ACKNOWLEDGED:
        return Verdict(ok=f"Cluster Autoscaler runs ({_where(running)}): acknowledged (autoscaler), it "
                          f"resizes none of {_groups(spec)} for the window")
    first = running[0]
    scale = (f"kubectl -n {(first.get('metadata') or {}).get('namespace')} scale deployment "
             f"{name_of(first)} --replicas=0")
    return Verdict(problem=(
        f"Cluster Autoscaler runs ({_where(running)}): it may resize {_groups(spec)} while the migration "
        "scales and drains them, and remove the nodes the cutover empties. For the migration window, scale "
        f"it to 0 ({scale}; this check then passes; scale it back after decommission), or keep it off these "
        "groups: remove the k8s.io/cluster-autoscaler/enabled tag from their Auto Scaling groups "
        f'(auto-discovery) or drop them from its --nodes flags; then set autoscaler to "{ACKNOWLEDGED}"'))


def karpenter(spec: MigrationSpec, deployments: Iterable[Obj], api_groups: frozenset[str]) -> Verdict:
    """Running Karpenter (a Deployment, or its API served with none) is refused until ``acknowledged``."""
    found = [d for d in deployments if is_karpenter(d)]
    running = [d for d in found if replicas(d) > 0]
    if running:
        where = _where(running)
    elif KARPENTER_GROUP in api_groups and not found:
        where = (f"the {KARPENTER_GROUP} API is served and no Deployment of it is in the cluster, as with "
                 "EKS Auto Mode")
    else:
        stopped = f" ({_where(found)} scaled to 0)" if found else ""
        return Verdict(ok=f"no Karpenter running{stopped}")
    if spec.autoscaler == ACKNOWLEDGED:
        return Verdict(ok=f"Karpenter runs ({where}): acknowledged (autoscaler), it adds and disrupts no "
                          "nodes for the window")
    return Verdict(problem=(
        f"Karpenter runs ({where}): it may launch nodes the migration does not know (no cni=aws-cni label: "
        "the fence takes aws-node off them and Cilium takes them over unplanned) and consolidate or drain "
        "nodes mid-migration. For the window, set every NodePool's spec.disruption.budgets to "
        '[{nodes: "0"}] (no voluntary disruption) and its spec.limits to what it runs now (no new nodes), or '
        f'scale the karpenter Deployment to 0; then set autoscaler to "{ACKNOWLEDGED}"'))


# ---- all of it ----------------------------------------------------------------------------------------

def evaluate(spec: MigrationSpec, found: Found, values: Obj | None = None) -> tuple[list[str], list[str]]:
    """(verified lines, problems) of every rule; the ENI rules only in ENI mode."""
    values = effective_values(spec) if values is None else values
    verdicts = [operator_permissions(spec, found.operator, values),
                cluster_autoscaler(spec, found.deployments),
                karpenter(spec, found.deployments, found.api_groups)]
    if eni_mode(values):
        verdicts[:0] = [prefix_delegation(spec, found.aws_node_env, values),
                        custom_networking(spec, found.aws_node_env, found.eniconfigs, values),
                        security_groups_for_pods(spec, found.aws_node_env)]
    else:
        verdicts.insert(0, Verdict(ok="ENI prerequisites: not checked (ENI mode is off in cilium_values)"))
    return [v.ok for v in verdicts if v.ok], [v.problem for v in verdicts if v.problem]


def check(clients: Clients, spec: MigrationSpec, *, aws_node: Obj | None,
          new_nodegroup: Obj | None) -> tuple[list[str], list[str]]:
    """``read`` (``aws_node`` and ``new_nodegroup`` as preflight read them), then ``evaluate``."""
    values = effective_values(spec)
    return evaluate(spec, read(clients, spec, values, aws_node=aws_node, new_nodegroup=new_nodegroup), values)


# ---- reading ----------------------------------------------------------------------------------------------

def read(clients: Clients, spec: MigrationSpec, values: Obj, *, aws_node: Obj | None,
         new_nodegroup: Obj | None, iam: Any = None) -> Found:
    """Everything ``evaluate`` looks at; ``iam`` defaults to a client of the run's AWS connection."""
    from kubernetes import client

    groups = {str(g.get("name")): g for g in (read_json(client.ApisApi(clients.api_client).get_api_versions)
                                              or {}).get("groups") or []}
    eniconfigs: list[dict[str, Any]] = []
    if ENICONFIG_GROUP in groups:
        version = str((groups[ENICONFIG_GROUP].get("preferredVersion") or {}).get("version") or "v1alpha1")
        eniconfigs = list_or_empty(client.CustomObjectsApi(clients.api_client).list_cluster_custom_object,
                                   ENICONFIG_GROUP, version, ENICONFIG_PLURAL)
    deployments = items(clients.apps.list_deployment_for_all_namespaces)
    operator = None
    if eni_mode(values) and spec.check_operator_iam:
        operator = read_operator_identity(iam if iam is not None else clients.iam, spec, values,
                                          new_nodegroup)
    return Found(container_env(aws_node), tuple(eniconfigs), tuple(deployments), frozenset(groups), operator)


def list_or_empty(call: Any, *args: Any) -> list[dict[str, Any]]:
    """``items`` of a list call; [] when the kind is not served (404)."""
    try:
        return items(call, *args)
    except Exception as exc:
        if is_not_found(exc):
            return []
        raise


def read_operator_identity(iam: Any, spec: MigrationSpec, values: Obj,
                           new_nodegroup: Obj | None) -> OperatorIdentity | None:
    """The operator's role (IRSA in the values, else the new group's node role) with its policies read;
    None when there is no new node group to take the role from."""
    in_values = operator_role_in_values(values)
    if in_values is not None:
        arn, source = in_values
    elif new_nodegroup is not None and new_nodegroup.get("nodeRole"):
        arn, source = str(new_nodegroup["nodeRole"]), f"node role of {_group_name(spec, new_nodegroup)}"
    elif new_nodegroup is not None:
        return OperatorIdentity("", f"node role of {_group_name(spec, new_nodegroup)}",
                                unreadable="the node group has no nodeRole")
    else:
        return None
    documents, unreadable = read_role_policies(iam, arn)
    return OperatorIdentity(arn, source, documents, unreadable)


def _group_name(spec: MigrationSpec, nodegroup: Obj) -> str:
    return str(nodegroup.get("nodegroupName") or spec.new_nodegroup)


def _document(raw: Any) -> dict[str, Any]:
    """A policy document as boto3 gives it: a dict, or URL-encoded JSON text."""
    return dict(raw) if isinstance(raw, Mapping) else dict(json.loads(unquote(str(raw))))


def read_role_policies(iam: Any, role_arn: str) -> tuple[tuple[tuple[str, Obj], ...], str]:
    """((policy name, document), ...) of the role's attached and inline policies, and "" ; or ((), why not)
    when the role does not exist or the AWS connection may not read it. Other errors propagate."""
    role = role_arn.rsplit("/", 1)[-1]
    documents: list[tuple[str, Obj]] = []
    try:
        for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=role):
            for attached in page.get("AttachedPolicies") or []:
                arn = attached["PolicyArn"]
                version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
                doc = iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"]
                documents.append((str(attached.get("PolicyName") or arn), _document(doc)))
        for page in iam.get_paginator("list_role_policies").paginate(RoleName=role):
            for name in page.get("PolicyNames") or []:
                doc = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
                documents.append((str(name), _document(doc)))
    except Exception as exc:
        code = error_code(exc)
        if code == "NoSuchEntity":
            return (), f"IAM has no role {role} ({error_message(exc)}): fix the role ARN"
        if code in ("AccessDenied", "AccessDeniedException"):
            return (), (f"the aws connection may not read the role's policies ({error_message(exc)}): "
                        f"grant it {', '.join(IAM_READS)} on that role and its policies "
                        "(deploy/iam-policy.json)")
        raise
    return tuple(documents), ""
