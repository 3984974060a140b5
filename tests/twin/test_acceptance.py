"""Acceptance: the runbook's migration steps on a full ``Twin`` (FAST timing), through kubectl, the
official client and boto3 only.

The steps run in order on one twin, each checking what the runbook says to verify:
1. ``kubectl label`` ng-1's nodes ``cni=aws-cni``;
2. ``cni In [aws-cni]`` added to aws-node's required affinity; ``kubectl rollout status`` completes;
3. ng-cilium scaled to 3 with boto3: 3 new nodes, NotReady, tainted, and no aws-node pod on them;
4. Cilium installed (the stand-in chart in twin/charts/cilium, rendered with the runbook's values):
   agents only on the new nodes, which turn Ready and lose the taint;
5. goldpinger deployed as in the runbook: ``/check_all`` through the service proxy has N x N results, all OK;
6. with ``cross_cni_broken`` on (admin API), exactly the cross-CNI results are ``OK: false``;
7. ``kubectl drain`` of a node with two pods of a PodDisruptionBudget-protected Deployment gets 429s,
   retries until the budget allows, and completes without a budget violation.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from twin.cluster import Twin
from twin.config import FAST
from twin.scenario import load_scenario

KUBECTL = "/usr/bin/kubectl"
CHART = Path(__file__).resolve().parents[2] / "twin" / "charts" / "cilium"
NG = "eks.amazonaws.com/nodegroup"
AGENT_NOT_READY = "node.cilium.io/agent-not-ready"
CNI_ANNOTATION = "twin.cilium-migration.io/cni"
CNI_EXPRESSION = {"key": "cni", "operator": "In", "values": ["aws-cni"]}
CILIUM_VALUES: dict[str, Any] = {
    "cluster": {"name": "dc-migrate-us-west-1-eksctl-io"},
    "egressMasqueradeInterfaces": "eth0",
    "eni": {"enabled": True},
    "bpf": {"hostLegacyRouting": True},
    "ipam": {"mode": "eni"},
    "operator": {"replicas": 1, "unmanagedPodWatcher": {"restart": False}},
    "serviceAccounts": {"cilium": {"name": "cilium"}, "operator": {"name": "cilium-operator"}},
    "routingMode": "native",
    "hubble": {"enabled": True, "relay": {"enabled": True}},
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "cni", "operator": "NotIn", "values": ["aws-cni"]}]}
                ]
            }
        }
    },
}
GP_LABELS = {"app.kubernetes.io/name": "goldpinger", "app.kubernetes.io/instance": "goldpinger"}
GP_POD_SPEC = {
    "serviceAccountName": "goldpinger",
    "containers": [
        {
            "name": "goldpinger-daemon",
            "image": "mauilion/goldpinger:v3.5.1",
            "env": [
                {"name": "HOSTNAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "HOST", "value": "0.0.0.0"},
                {"name": "PORT", "value": "8080"},
                {"name": "LABEL_SELECTOR", "value": "app.kubernetes.io/name=goldpinger"},
                {"name": "REFRESH_INTERVAL", "value": "5"},
            ],
            "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}},
        }
    ],
}
GOLDPINGER = [
    {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "goldpinger", "labels": GP_LABELS}},
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "goldpinger-role", "labels": GP_LABELS},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}],
    },
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "goldpinger-rolebinding", "labels": GP_LABELS},
        "subjects": [{"kind": "ServiceAccount", "name": "goldpinger"}],
        "roleRef": {"kind": "Role", "name": "goldpinger-role", "apiGroup": "rbac.authorization.k8s.io"},
    },
    {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "goldpinger", "labels": GP_LABELS},
        "spec": {
            "type": "LoadBalancer",
            "selector": GP_LABELS,
            "ports": [{"port": 8080, "targetPort": 8080, "protocol": "TCP", "name": "http"}],
        },
    },
    {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "goldpinger", "labels": GP_LABELS},
        "spec": {
            "selector": {"matchLabels": GP_LABELS},
            "template": {"metadata": {"labels": GP_LABELS}, "spec": GP_POD_SPEC},
        },
    },
    {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "goldpinger", "labels": GP_LABELS},
        "spec": {
            "replicas": 5,
            "selector": {"matchLabels": GP_LABELS},
            "template": {"metadata": {"labels": GP_LABELS}, "spec": GP_POD_SPEC},
        },
    },
]


class Cluster:
    """The twin as a user sees it: kubectl with a kubeconfig, the official client, boto3."""

    def __init__(self, twin: Twin, kubeconfig: Path) -> None:
        self.twin, self.kubeconfig = twin, kubeconfig
        self.api_client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
        self.core = kubernetes.client.CoreV1Api(self.api_client)
        self.apps = kubernetes.client.AppsV1Api(self.api_client)
        self.eks = twin.boto3_client("eks")

    def kubectl(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [KUBECTL, "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def nodes(self, selector: str) -> list[Any]:
        return self.core.list_node(label_selector=selector).items

    def pods_on(self, node: str, namespace: str, selector: str) -> list[Any]:
        return self.core.list_namespaced_pod(
            namespace, label_selector=selector, field_selector=f"spec.nodeName={node}"
        ).items

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        resp = self.api_client.call_api(
            f"/_twin/{path}",
            method,
            body=body,
            auth_settings=["BearerToken"],
            header_params={"Content-Type": "application/json"},
            _preload_content=False,
        )
        return json.loads(resp.data)

    def check_all(self) -> dict[str, Any]:
        resp = self.core.connect_get_namespaced_service_proxy_with_path(
            "goldpinger:8080", "default", "check_all", _preload_content=False
        )
        return json.loads(resp.data)


def eventually(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """Poll ``check`` until it returns a truthy value; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def ready(node: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


def taint_keys(node: Any) -> set[str]:
    return {t.key for t in node.spec.taints or []}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    twin = Twin(load_scenario("default"), timing=FAST)
    twin.start()
    try:
        path = tmp_path_factory.mktemp("acceptance") / "kubeconfig"
        twin.write_kubeconfig(path)
        yield Cluster(twin, path)
    finally:
        twin.stop()


class TestRunbookOnTheTwin:
    def test_1_label_existing_nodes(self, cluster: Cluster) -> None:
        out = cluster.kubectl("label", "nodes", "-l", f"{NG}=ng-1", "cni=aws-cni")
        assert out.returncode == 0, out.stderr
        assert len(cluster.nodes("cni=aws-cni")) == 3

    def test_2_fence_aws_node(self, cluster: Cluster) -> None:
        path = (
            "/spec/template/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution"
            "/nodeSelectorTerms/0/matchExpressions/-"
        )
        cluster.apps.patch_namespaced_daemon_set(
            "aws-node", "kube-system", [{"op": "add", "path": path, "value": CNI_EXPRESSION}]
        )
        out = cluster.kubectl("rollout", "status", "daemonset/aws-node", "-n", "kube-system", "--timeout=30s")
        assert out.returncode == 0, out.stderr + out.stdout
        ds = cluster.apps.read_namespaced_daemon_set("aws-node", "kube-system")
        terms = (
            ds.spec.template.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
        )
        assert terms.node_selector_terms[0].match_expressions[-1].to_dict() == CNI_EXPRESSION
        assert ds.status.number_ready == 3

    def test_3_scale_ng_cilium(self, cluster: Cluster) -> None:
        cluster.eks.update_nodegroup_config(
            clusterName="dc-migrate",
            nodegroupName="ng-cilium",
            scalingConfig={"minSize": 0, "maxSize": 3, "desiredSize": 3},
        )
        new = eventually(
            lambda: len(cluster.nodes(f"{NG}=ng-cilium")) == 3 and cluster.nodes(f"{NG}=ng-cilium"),
            "3 ng-cilium nodes",
        )
        names = [n.metadata.name for n in new]
        eventually(
            lambda: all(cluster.pods_on(n, "kube-system", "k8s-app=kube-proxy") for n in names),
            "kube-proxy on the new nodes (the DaemonSet controller has seen them)",
        )
        for node in cluster.nodes(f"{NG}=ng-cilium"):
            assert not ready(node)
            assert AGENT_NOT_READY in taint_keys(node)
            assert cluster.pods_on(node.metadata.name, "kube-system", "k8s-app=aws-node") == []

    def test_4_install_cilium(self, cluster: Cluster) -> None:
        from helm_python import Chart

        rendered = Chart.load(str(CHART)).render(CILIUM_VALUES, name="cilium", namespace="kube-system")
        docs = [
            d
            for name, text in sorted(rendered.items())
            if name.endswith(".yaml")
            for d in yaml.safe_load_all(text)
            if d
        ]
        assert {"DaemonSet", "Deployment", "ConfigMap"} <= {d["kind"] for d in docs}
        for doc in docs:
            kubernetes.utils.create_from_dict(cluster.api_client, doc, namespace="kube-system")
        new = {n.metadata.name for n in cluster.nodes(f"{NG}=ng-cilium")}

        def cilium_settled() -> bool:
            nodes = cluster.nodes(f"{NG}=ng-cilium")
            return all(ready(n) and AGENT_NOT_READY not in taint_keys(n) for n in nodes)

        eventually(cilium_settled, "ng-cilium nodes Ready without the agent-not-ready taint")
        agents = cluster.core.list_namespaced_pod("kube-system", label_selector="k8s-app=cilium").items
        assert {p.spec.node_name for p in agents} == new and len(agents) == 3

    def test_5_goldpinger_mesh_is_full(self, cluster: Cluster) -> None:
        for doc in GOLDPINGER:
            kubernetes.utils.create_from_dict(cluster.api_client, doc, namespace="default")
        selector = "app.kubernetes.io/name=goldpinger"

        def all_ready() -> list[Any]:
            pods = cluster.core.list_namespaced_pod("default", label_selector=selector).items
            ok = len(pods) == 11 and all(p.status.phase == "Running" for p in pods)
            return pods if ok else []

        pods = eventually(all_ready, "6 DaemonSet + 5 Deployment goldpinger pods Running")
        names = {p.metadata.name for p in pods}

        def full_mesh() -> dict[str, Any]:
            body = cluster.check_all()
            responses = body.get("responses", {})
            results = [
                r
                for pod in responses.values()
                for r in (pod.get("response") or {}).get("podResults", {}).values()
            ]
            complete = (
                set(responses) == names and len(results) == len(names) ** 2 and all(r["OK"] for r in results)
            )
            return body if complete else {}

        eventually(full_mesh, "/check_all with 11 x 11 OK results")

    def test_6_cross_cni_broken(self, cluster: Cluster) -> None:
        pods = cluster.core.list_namespaced_pod(
            "default", label_selector="app.kubernetes.io/name=goldpinger"
        ).items
        cni = {p.metadata.name: (p.metadata.annotations or {}).get(CNI_ANNOTATION) for p in pods}
        assert set(cni.values()) == {"aws-cni", "cilium"}
        assert cluster.admin("PATCH", "faults", {"cross_cni_broken": True})["cross_cni_broken"] is True
        try:

            def as_expected() -> bool:
                # The instance behind the Service gathers every peer's /check: peers it cannot reach
                # (the other CNI's) appear with OK false and no results; the rest report every peer.
                responses = cluster.check_all()["responses"]
                gathered = {
                    src: r["response"]["podResults"] for src, r in responses.items() if "response" in r
                }
                missing = set(responses) - set(gathered)
                return (
                    set(responses) == set(cni)
                    and bool(gathered)
                    and all(not responses[src]["OK"] for src in missing)
                    and {cni[s] for s in gathered}.isdisjoint({cni[s] for s in missing})
                    and all(set(results) == set(cni) for results in gathered.values())
                    and all(
                        r["OK"] == (cni[src] == cni[dst])
                        for src, results in gathered.items()
                        for dst, r in results.items()
                    )
                )

            eventually(as_expected, "exactly the cross-CNI results failing")
        finally:
            cluster.admin("PATCH", "faults", {"cross_cni_broken": False})

    def test_7_drain_respects_the_budget(self, cluster: Cluster) -> None:
        old_nodes = [n.metadata.name for n in cluster.nodes("cni=aws-cni")]
        node = max(old_nodes, key=lambda n: len(cluster.pods_on(n, "default", "app=web")))
        assert len(cluster.pods_on(node, "default", "app=web")) >= 2  # 4 replicas on 3 nodes
        seen = len(cluster.admin("GET", "requests")["items"])
        out = cluster.kubectl("drain", node, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=60s")
        assert out.returncode == 0, out.stderr
        assert "violate the pod's disruption budget" in out.stderr + out.stdout
        evictions = [
            r
            for r in cluster.admin("GET", f"requests?since={seen}")["items"]
            if r["subresource"] == "eviction"
        ]
        assert {r["code"] for r in evictions} >= {201, 429}
        assert cluster.pods_on(node, "default", "app=web") == []
        eventually(
            lambda: (
                len(
                    [
                        p
                        for p in cluster.core.list_namespaced_pod("default", label_selector="app=web").items
                        if p.status.phase == "Running"
                    ]
                )
                == 4
            ),
            "4 web pods Running again",
        )
        assert [d for d in cluster.admin("GET", "disruptions")["items"] if d["pdb"] == "default/web"] == []
