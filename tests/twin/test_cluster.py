"""``Twin``: the assembled twin starts settled, hands out working clients and files, and stops cleanly.

Covers: the default scenario settles (3 Ready ng-1 nodes, every pod Running, ng-cilium empty) with FAST
timing; EKS through boto3; the Kubernetes API through the official client, a written kubeconfig, and
Airflow's EksHook and KubernetesHook built from the env file's connections; the bearer token is
required; a cluster that does not settle in time fails with a clear error and leaves nothing behind;
twins run one after another in one process.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from twin.cluster import Twin, TwinError
from twin.config import FAST
from twin.scenario import ClusterSpec, load_scenario

CILIUM_TAINT = {"key": "node.cilium.io/agent-not-ready", "value": "true", "effect": "NoExecute"}


def core(twin: Twin) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(twin.kube_client())


class TestSettled:
    def test_ng1_nodes_are_ready_and_ng_cilium_is_empty(self, twin: Twin) -> None:
        nodes = core(twin).list_node().items
        assert len(nodes) == 3
        assert {n.metadata.labels["eks.amazonaws.com/nodegroup"] for n in nodes} == {"ng-1"}
        assert all(c.status == "True" for n in nodes for c in n.status.conditions if c.type == "Ready")
        assert core(twin).list_node(label_selector="eks.amazonaws.com/nodegroup=ng-cilium").items == []

    def test_every_pod_runs(self, twin: Twin) -> None:
        pods = core(twin).list_pod_for_all_namespaces().items
        by_owner: dict[str, list[Any]] = {}
        for p in pods:
            by_owner.setdefault(p.metadata.labels.get("k8s-app") or p.metadata.labels.get("app"), []).append(
                p
            )
        assert {k: len(v) for k, v in by_owner.items()} == {
            "aws-node": 3,
            "kube-proxy": 3,
            "kube-dns": 2,
            "web": 4,
            "db": 2,
        }
        assert {p.status.phase for p in pods} == {"Running"}

    def test_eks_side_through_boto3(self, twin: Twin) -> None:
        client = twin.boto3_client("eks")
        assert client.describe_cluster(name="dc-migrate")["cluster"]["version"] == "1.30"
        ng = client.describe_nodegroup(clusterName="dc-migrate", nodegroupName="ng-cilium")["nodegroup"]
        assert ng["scalingConfig"]["desiredSize"] == 0
        assert ng["taints"] == [dict(CILIUM_TAINT, effect="NO_EXECUTE")]
        assert client.describe_cluster(name="dc-migrate")["cluster"]["endpoint"] == twin.kube_tls_url, "as EKS does"


class TestAccess:
    def test_token_is_required(self, twin: Twin) -> None:
        api = kubernetes.client.CoreV1Api(
            kubernetes.client.ApiClient(kubernetes.client.Configuration(host=twin.kube_url))
        )
        with pytest.raises(kubernetes.client.ApiException) as err:
            api.list_node()
        assert err.value.status == 401

    def test_written_kubeconfig_works_with_the_official_client(self, twin: Twin, tmp_path: Path) -> None:
        path = tmp_path / "kubeconfig"
        twin.write_kubeconfig(path)
        assert path.stat().st_mode & 0o077 == 0
        client = kubernetes.config.new_client_from_config(config_file=str(path))
        assert len(kubernetes.client.CoreV1Api(client).list_node().items) == 3

    def test_airflow_hooks_reach_the_twin_through_the_env_file(
        self, twin: Twin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        env_file = tmp_path / "twin.env"
        twin.write_env_file(env_file)
        for line in env_file.read_text().splitlines():
            key, _, value = line.partition("=")
            monkeypatch.setenv(key, value.strip("'"))
        conn = json.loads(env_file.read_text().split("AIRFLOW_CONN_AWS_DEFAULT='")[1].split("'\n")[0])
        assert conn["extra"] == {"region_name": "us-west-1", "endpoint_url": twin.eks_url}
        from airflow.providers.amazon.aws.hooks.eks import EksHook
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        eks = EksHook(aws_conn_id="aws_default", region_name="us-west-1")
        assert eks.conn.describe_cluster(name="dc-migrate")["cluster"]["name"] == "dc-migrate"
        nodes = KubernetesHook(conn_id="kubernetes_default").core_v1_client.list_node().items
        assert len(nodes) == 3


def test_a_cluster_that_does_not_settle_fails_clearly_and_cleans_up() -> None:
    scenario = load_scenario("default").model_copy(update={"cluster": ClusterSpec(name="slow")})
    stuck = scenario.model_copy(update={"faults": {"slow_provisioning_s": 60}})  # not within the wait
    twin = Twin(stuck, timing=FAST, settle_timeout=0.5)
    with pytest.raises(TwinError, match=r"waiting for the cluster to settle.*node group ng-1: 0/3 nodes"):
        twin.start()
    with Twin(scenario, timing=FAST) as again:  # the name is free again
        assert len(core(again).list_node().items) == 3


def test_two_twins_with_one_cluster_name_cannot_run_at_once(twin: Twin) -> None:
    with pytest.raises(TwinError, match="already exists in this process"):
        Twin(load_scenario("default"), timing=FAST).start()
