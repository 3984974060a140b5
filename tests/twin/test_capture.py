"""``python -m twin.capture``: a scenario taken from a running cluster, read-only, with no secret in it, that
a second twin runs and captures back to the same file."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from twin import capture
from twin.cluster import Twin
from twin.config import FAST
from twin.rehearsal import RehearsalError, params_for
from twin.scenario import ClusterSpec, Scenario, load_scenario
from twin.scenarios.generate import generate_scenario

ROOT = Path(__file__).resolve().parents[2]
READONLY = ROOT / "deploy" / "rbac" / "capture-readonly.yaml"
PRIVATE_KEY = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----\n"
SECRETS = ("hunter2-db-password", "PRIVATE KEY", "s3cr3t-from-configmap", "regcred-pull-secret",
           "sk_live_annotation_token", "--password=argv-secret")

KARPENTER_NODE = {
    "apiVersion": "v1", "kind": "Node",
    "metadata": {"name": "ip-10-0-9-9.us-west-1.compute.internal",
                 "labels": {"karpenter.sh/nodepool": "default", "node.kubernetes.io/instance-type": "m5.xlarge",
                            "kubernetes.io/os": "linux"}},
    "spec": {"taints": [{"key": "dedicated", "value": "batch", "effect": "NoSchedule"}]},
}
SECRET_LADEN = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "payments", "labels": {"team": "pay"}}},
    {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "payments"},
     "stringData": {"password": SECRETS[0], "tls.key": PRIVATE_KEY}},
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "payments"},
     "data": {"token": SECRETS[2]}},
    {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "api", "namespace": "payments"},
     "secrets": [{"name": "api-token"}], "imagePullSecrets": [{"name": SECRETS[3]}]},
    {"apiVersion": "apps/v1", "kind": "Deployment",
     "metadata": {"name": "api", "namespace": "payments", "labels": {"app": "api"},
                  "annotations": {"kubectl.kubernetes.io/last-applied-configuration": SECRETS[4]}},
     "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "api"}},
              "template": {"metadata": {"labels": {"app": "api"}},
                           "spec": {"serviceAccountName": "api", "imagePullSecrets": [{"name": SECRETS[3]}],
                                    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "batch",
                                                     "effect": "NoSchedule"}],
                                    "containers": [{"name": "api", "image": "busybox:1.36",
                                                    "args": [SECRETS[5]],
                                                    "env": [{"name": "DB_PASSWORD", "value": SECRETS[0]},
                                                            {"name": "KEY", "valueFrom": {"secretKeyRef": {
                                                                "name": "db", "key": "tls.key"}}}],
                                                    "envFrom": [{"secretRef": {"name": "db"}}]}],
                                    "volumes": [{"name": "db", "secret": {"secretName": "db"}}]}}}},
    {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "api", "namespace": "payments"},
     "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "api"}}}},
]


def rich_scenario() -> Scenario:
    """The default scenario plus a Karpenter node and a namespace full of secrets."""
    base = load_scenario("default")
    return base.model_copy(update={"objects": [KARPENTER_NODE, *base.objects, *SECRET_LADEN]})


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Twin, Path]]:
    """A running twin that enforces the capture's read-only role, and its env file (that identity)."""
    twin = Twin(rich_scenario(), timing=FAST, rbac=READONLY)
    twin.start()
    env = tmp_path_factory.mktemp("capture") / "twin.env"
    twin.write_env_file(env, token=twin.rbac_token)
    try:
        yield twin, env
    finally:
        twin.stop()


def run_capture(env: Path, out: Path) -> dict[str, Any]:
    assert capture.main(["--env-file", str(env), "--out", str(out)]) == 0
    data: dict[str, Any] = yaml.safe_load(out.read_text())
    return data


@pytest.fixture(scope="module")
def captured(source: tuple[Twin, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("capture") / "captured.yaml"
    run_capture(source[1], out)
    return out


def capture_requests(twin: Twin) -> list[Any]:
    return [r for r in twin.api.request_log if r.user == "cilium-migration-capture"]


def test_the_capture_runs_as_a_read_only_identity_with_every_request_allowed(
        source: tuple[Twin, Path], captured: Path) -> None:
    requests = capture_requests(source[0])
    assert requests, "the capture made no request as the read-only identity"
    assert {r.verb for r in requests} == {"list"}
    assert all(r.code == 200 for r in requests), [r for r in requests if r.code != 200]
    assert not any(r.resource in ("secrets", "configmaps") for r in requests)


def test_the_capture_keeps_what_a_migration_depends_on(captured: Path) -> None:
    scenario = yaml.safe_load(captured.read_text())
    assert scenario["cluster"] == {"name": "dc-migrate", "region": "us-west-1", "version": "1.30"}
    groups = {g["name"]: g for g in scenario["nodegroups"]}
    assert groups["ng-1"]["desired"] == 3
    assert groups["ng-cilium"]["taints"] == [{"key": "node.cilium.io/agent-not-ready", "value": "true",
                                              "effect": "NO_EXECUTE"}]
    by_kind = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in scenario["objects"]}
    node = by_kind[("Node", None, KARPENTER_NODE["metadata"]["name"])]
    assert node["metadata"]["labels"]["karpenter.sh/nodepool"] == "default"
    assert node["spec"]["taints"] == KARPENTER_NODE["spec"]["taints"]
    api = by_kind[("Deployment", "payments", "api")]
    assert api["spec"]["replicas"] == 2
    assert api["spec"]["template"]["spec"]["tolerations"][0]["key"] == "dedicated"
    assert ("PodDisruptionBudget", "payments", "api") in by_kind
    aws_node = by_kind[("DaemonSet", "kube-system", "aws-node")]
    env = {e["name"] for c in aws_node["spec"]["template"]["spec"]["containers"] for e in c.get("env", [])}
    assert env and env <= capture.AWS_NODE_SETTINGS  # aws-node's settings, nothing else
    assert not any(k[0] in ("Secret", "ConfigMap") for k in by_kind)
    assert "requests)" in captured.read_text().splitlines()[0]  # how long and how many, in the file's head


def test_no_secret_value_reaches_the_file(captured: Path) -> None:
    text = captured.read_text()
    for needle in SECRETS:
        assert needle not in text
    for needle in (PRIVATE_KEY, SECRETS[0]):
        encoded = base64.b64encode(needle.encode()).decode()
        assert encoded[:20] not in text
    for key in ("imagePullSecrets", "envFrom", "valueFrom", "annotations", "secretName", "volumes"):
        assert key not in text


def test_a_second_twin_runs_the_capture_and_captures_it_back_the_same(
        captured: Path, tmp_path: Path) -> None:
    first = yaml.safe_load(captured.read_text())
    first["cluster"]["name"] = "dc-rehearsal"  # the source twin still runs (one EKS cluster per name)
    twin = Twin(Scenario.model_validate(first), timing=FAST)
    twin.start()
    try:
        second, _ = capture.capture(twin.kube_client(), twin.boto3_client("eks"), cluster="dc-rehearsal")
    finally:
        twin.stop()
    assert json.loads(json.dumps(second)) == first


def test_the_number_of_requests_does_not_grow_with_the_cluster() -> None:
    counts = []
    for nodes in (3, 40):
        scenario = generate_scenario(nodes, pods=4 * nodes, per_group=20)
        name = f"dc-{nodes}-nodes"
        twin = Twin(scenario.model_copy(update={"cluster": ClusterSpec(name=name)}), timing=FAST)
        twin.start()
        try:
            _, requests = capture.capture(twin.kube_client(), twin.boto3_client("eks"), cluster=name)
        finally:
            twin.stop()
        groups = len(twin.scenario.nodegroups)
        counts.append(requests - groups)  # one DescribeNodegroup per group (EKS has no batch read)
    assert counts[0] == counts[1], counts


def test_an_env_file_without_the_connections_is_refused(tmp_path: Path) -> None:
    env = tmp_path / "empty.env"
    env.write_text("TWIN_REGION='us-west-1'\n")
    assert capture.main(["--env-file", str(env), "--out", str(tmp_path / "x.yaml")]) == 2
    assert not (tmp_path / "x.yaml").exists()


def test_a_captured_scenario_gives_the_params_that_fit_it(captured: Path) -> None:
    scenario = Scenario.model_validate(yaml.safe_load(captured.read_text()))
    assert params_for(scenario) == {"cluster_name": "dc-migrate", "region": "us-west-1",
                                    "old_nodegroups": ["ng-1"], "new_nodegroup": "ng-cilium",
                                    "new_node_count": 3}


def test_a_cluster_without_a_tainted_group_says_what_to_add() -> None:
    base = load_scenario("default")
    untainted = base.model_copy(update={"nodegroups": [g.model_copy(update={"taints": []})
                                                        for g in base.nodegroups]})
    with pytest.raises(RehearsalError, match="create it at size 0"):
        params_for(untainted)
