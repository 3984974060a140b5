"""The twin's EKS API: moto's server in this process, and the scenario's cluster and node groups in it.

Rules:
- The server listens on 127.0.0.1 (port 0 picks a free one); clients made here carry fake credentials of
  their own and never touch the process environment.
- moto keeps its state per process (account, region). ``read_nodegroups`` reads that state directly,
  read-only: the node-group controller polls it without HTTP round trips. Everything that changes EKS
  goes through boto3 against the server, as the DAG does.
- Every request the server answers is recorded in ``request_log`` (``twin.aws_requests``): which IAM
  actions a client called, with which access key.
- ``faults`` (the twin's ``Faults``, attachable at any time) may answer EKS requests with injected AWS
  errors (``Faults.eks``: throttling, ``ResourceInUseException``...) instead of moto.
- EC2 ``TerminateInstances`` for the instances behind the store's nodes is answered by ``twin.ec2_api``
  (moto knows none of them); the node-group controller then replaces the node. The chain in front of
  moto: recorder -> fault injector -> EC2 ``TerminateInstances`` -> EKS add-on APIs -> moto.
- The cluster's node groups run with a node role in moto's IAM (``create_node_role``): the AWS managed
  policies a managed node group's role has, plus an inline policy with the EC2 actions Cilium's ENI IPAM
  needs beyond them, so cilium-operator's permissions check passes as on a cluster prepared for Cilium.
  moto loads no AWS managed policy by default: the three are put into its IAM state in-process.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import boto3
from moto.core import DEFAULT_ACCOUNT_ID
from moto.server import ThreadedMotoServer

from twin.addon_api import AddonApi
from twin.addons import AddonManager
from twin.aws_requests import AwsFaultInjector, AwsRequest, AwsRequestRecorder
from twin.ec2_api import Ec2Api
from twin.faults import Faults
from twin.store import Store

FAKE_ACCESS_KEY = "testing"
FAKE_SECRET_KEY = "testing"
NODE_ROLE_ARN = "arn:aws:iam::{account}:role/{cluster}-nodegroup-role"
CLUSTER_ROLE_ARN = "arn:aws:iam::{account}:role/{cluster}-cluster-role"
SUBNETS = ["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002", "subnet-0a1b2c3d4e5f60003"]
NODE_ROLE_NAME = "{cluster}-nodegroup-role"
# What eksctl and EKS's docs attach to a managed node group's role
NODE_ROLE_POLICIES = (
    "AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly"
)
# Cilium's ENI IPAM "Required Privileges" that those three do not grant (an inline policy on the node role)
CILIUM_ENI_EXTRA_ACTIONS = ("ec2:DescribeManagedPrefixLists", "ec2:GetManagedPrefixListEntries")
CILIUM_ENI_POLICY = "cilium-eni-ipam"
EC2_TRUST = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}

K8S_EFFECT = {
    "NO_SCHEDULE": "NoSchedule",
    "NO_EXECUTE": "NoExecute",
    "PREFER_NO_SCHEDULE": "PreferNoSchedule",
}
EKS_EFFECT = {v: k for k, v in K8S_EFFECT.items()}


def account_id() -> str:
    """The account moto files our requests under (it honours MOTO_ACCOUNT_ID, else its default)."""
    return os.environ.get("MOTO_ACCOUNT_ID", DEFAULT_ACCOUNT_ID)


class EksServer:
    """moto's HTTP server on 127.0.0.1, serving EKS (and STS, and EC2 ``TerminateInstances``) for the twin."""

    def __init__(self, *, region: str, host: str = "127.0.0.1", port: int = 0,
                 faults: Faults | None = None, store: Store | None = None, addon_delay_s: float = 0.0) -> None:
        self.region, self.host = region, host
        self.faults = faults
        self.store = store
        self.addons = AddonManager(region=region, account=account_id(), store=store, delay_s=addon_delay_s,
                                   cluster_exists=lambda name: cluster_exists(region, name))
        self._server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
        self.port = 0
        self._recorder: AwsRequestRecorder | None = None

    @property
    def request_log(self) -> list[AwsRequest]:
        """Every request served since start(), oldest first."""
        return self._recorder.log if self._recorder is not None else []

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        werkzeug_log = logging.getLogger("werkzeug")
        if werkzeug_log.level == logging.NOTSET:
            werkzeug_log.setLevel(logging.WARNING)  # moto's server logs every request otherwise
        self._server.start()
        self.port = self._server.get_host_and_port()[1]
        wsgi = self._server._server  # werkzeug's server: wrap its app before any client knows the port
        if wsgi is not None:
            served = Ec2Api(AddonApi(wsgi.app, self.addons), self.store)
            self._recorder = AwsRequestRecorder(AwsFaultInjector(served, lambda: self.faults))
            wsgi.app = self._recorder

    def stop(self) -> None:
        self.addons.stop()
        self._server.stop()

    def client(self, service: str = "eks") -> Any:
        """A boto3 client pointed at this server, with its own fake credentials and the twin's region."""
        session = boto3.session.Session(
            aws_access_key_id=FAKE_ACCESS_KEY, aws_secret_access_key=FAKE_SECRET_KEY, region_name=self.region
        )
        return session.client(service, endpoint_url=self.url)


def create_cluster(eks: Any, *, name: str, version: str) -> dict[str, Any]:
    """Create the EKS cluster; a cluster of that name left in this process's moto state is an error."""
    cluster: dict[str, Any] = eks.create_cluster(
        name=name,
        version=version,
        roleArn=CLUSTER_ROLE_ARN.format(account=account_id(), cluster=name),
        resourcesVpcConfig={
            "subnetIds": SUBNETS,
            "endpointPublicAccess": True,
            "endpointPrivateAccess": True,
        },
    )["cluster"]
    create_node_role(_iam_client_like(eks), cluster=name)
    return cluster


def _iam_client_like(eks: Any) -> Any:
    """An IAM client for the server and region ``eks`` talks to, with the twin's fake credentials."""
    session = boto3.session.Session(
        aws_access_key_id=FAKE_ACCESS_KEY, aws_secret_access_key=FAKE_SECRET_KEY,
        region_name=eks.meta.region_name,
    )
    return session.client("iam", endpoint_url=eks.meta.endpoint_url)


def create_nodegroup(
    eks: Any,
    *,
    cluster: str,
    name: str,
    instance_type: str,
    desired: int,
    min_size: int,
    max_size: int,
    labels: dict[str, str] | None = None,
    taints: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """Create a managed node group; ``taints`` in EKS form (effect ``NO_SCHEDULE``...)."""
    nodegroup: dict[str, Any] = eks.create_nodegroup(
        clusterName=cluster,
        nodegroupName=name,
        instanceTypes=[instance_type],
        scalingConfig={"minSize": min_size, "maxSize": max_size, "desiredSize": desired},
        labels=labels or {},
        taints=taints or [],
        subnets=SUBNETS,
        capacityType="ON_DEMAND",
        nodeRole=NODE_ROLE_ARN.format(account=account_id(), cluster=cluster),
    )["nodegroup"]
    return nodegroup


def create_node_role(iam: Any, *, cluster: str) -> str:
    """The node groups' role (``NODE_ROLE_ARN``) with ``NODE_ROLE_POLICIES`` attached and the inline policy
    ``CILIUM_ENI_POLICY``; one left by an earlier twin of this process is reused. Returns its ARN."""
    _install_aws_managed_policies(NODE_ROLE_POLICIES)
    name = NODE_ROLE_NAME.format(cluster=cluster)
    try:
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(EC2_TRUST))
    except iam.exceptions.EntityAlreadyExistsException:
        pass
    for policy in NODE_ROLE_POLICIES:
        iam.attach_role_policy(RoleName=name, PolicyArn=f"arn:aws:iam::aws:policy/{policy}")
    document = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": list(CILIUM_ENI_EXTRA_ACTIONS), "Resource": "*"}]}
    iam.put_role_policy(RoleName=name, PolicyName=CILIUM_ENI_POLICY, PolicyDocument=json.dumps(document))
    return NODE_ROLE_ARN.format(account=account_id(), cluster=cluster)


@cache
def _aws_managed_policy_data() -> dict[str, Any]:
    from moto.iam.aws_managed_policies import aws_managed_policies_data

    data: dict[str, Any] = json.loads(aws_managed_policies_data)
    return data


def _install_aws_managed_policies(names: tuple[str, ...]) -> None:
    """Put AWS managed policies (moto's copies of their documents) into moto's IAM state, as on AWS."""
    from moto.iam.models import AWSManagedPolicy, iam_backends

    backend = iam_backends[account_id()]["aws"]
    for name in names:
        if f"arn:aws:iam::aws:policy/{name}" not in backend.managed_policies:
            policy = AWSManagedPolicy.from_data(name, account_id(), "aws", _aws_managed_policy_data()[name])
            backend.managed_policies[policy.arn] = policy


def _forget_node_role(cluster: str) -> None:
    """Drop the cluster's node role (and its attachments) from moto's in-process IAM state."""
    from moto.iam.models import iam_backends

    backend = iam_backends[account_id()]["aws"]
    name = NODE_ROLE_NAME.format(cluster=cluster)
    for role in [r for r in backend.roles.values() if r.name == name]:
        for policy in list(role.managed_policies.values()):
            policy.detach_from(role)
        del backend.roles[role.id]


def forget_cluster(region: str, name: str) -> None:
    """Drop the cluster (its node groups, its node role) from moto's in-process state: a later twin may
    reuse the name."""
    from moto.eks.models import eks_backends

    eks_backends[account_id()][region].clusters.pop(name, None)
    _forget_node_role(name)


def cluster_exists(region: str, name: str) -> bool:
    from moto.eks.models import eks_backends

    return name in eks_backends[account_id()][region].clusters


@dataclass(frozen=True)
class NodeGroupState:
    """What the node-group controller needs of one group, as moto holds it now."""

    name: str
    instance_type: str
    desired: int
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[tuple[str, str, str], ...] = ()  # (key, value, Kubernetes effect)
    capacity_type: str = "ON_DEMAND"


def read_nodegroups(region: str, cluster: str) -> list[NodeGroupState] | None:
    """The cluster's node groups from moto's in-process state; None when the cluster does not exist."""
    from moto.eks.models import eks_backends

    found = eks_backends[account_id()][region].clusters.get(cluster)
    if found is None:
        return None
    groups = []
    for ng in list(found.nodegroups.values()):
        taints = tuple(
            (t.get("key", ""), t.get("value", ""), K8S_EFFECT.get(t.get("effect", ""), t.get("effect", "")))
            for t in list(ng.taints or [])
        )
        groups.append(
            NodeGroupState(
                name=ng.nodegroup_name,
                instance_type=(ng.instance_types or ["m5.large"])[0],
                desired=int((ng.scaling_config or {}).get("desiredSize", 0)),
                labels=dict(ng.labels or {}),
                taints=taints,
                capacity_type=ng.capacity_type or "ON_DEMAND",
            )
        )
    return groups


def set_cluster_endpoint(region: str, name: str, endpoint: str, ca_pem: bytes) -> None:
    """Make ``describe_cluster`` answer as EKS does for this cluster: its API server's URL and the CA
    (base64 PEM) that signed the server's certificate (moto makes up both)."""
    import base64

    from moto.eks.models import eks_backends

    cluster = eks_backends[account_id()][region].clusters[name]
    cluster.endpoint = endpoint
    cluster.certificate_authority = {"data": base64.b64encode(ca_pem).decode()}
