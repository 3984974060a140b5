"""kubectl v1.32 against the twin's API server (over its HTTPS listener, with the bearer token).

Covers: get nodes / pods -A -o wide / ds -n kube-system as kubectl prints them (server-side Tables);
cordon, uncordon and label changing the stored node; apply (with --validate=false, as the twin serves
no OpenAPI), scale and delete; drain evicting through the eviction subresource, skipping DaemonSet
pods, and retrying a PDB-protected pod (429) until the budget allows it.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from twin.apiserver import ApiServer
from twin.resources import DEPLOYMENTS, NODES, PDBS, PODS
from twin.store import Store


@pytest.fixture
def cluster(objects: Any) -> dict[str, Any]:
    """Two nodes, an aws-node DaemonSet pod on each, and two web pods (one per node)."""
    objects.node("n1", labels={"node-role.kubernetes.io/worker": ""})
    objects.node("n2", ip="192.168.1.11")
    ds = objects.daemonset("aws-node")
    rs = objects.replicaset("web", replicas=2, labels={"app": "web"})
    for node in ("n1", "n2"):
        objects.pod(f"aws-node-{node}", node, namespace="kube-system", labels={"k8s-app": "aws-node"}, owner=ds)
        objects.pod(f"web-{node}", node, labels={"app": "web"}, owner=rs, ip=f"10.0.{node[1]}.5")
    return {"rs": rs, "ds": ds}


def _table(output: str) -> list[list[str]]:
    return [line.split() for line in output.strip().splitlines()]


@pytest.mark.usefixtures("cluster")
def test_get_nodes(kubectl: Any, store: Store) -> None:
    store.mutate(NODES, None, "n2", lambda n: n["spec"].update(unschedulable=True))
    rows = _table(kubectl("get", "nodes").stdout)
    assert rows[0] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert [r[:3] + r[4:] for r in rows[1:]] == [["n1", "Ready", "worker", "v1.30.14-eks-b707fbb"],
                                                 ["n2", "Ready,SchedulingDisabled", "<none>", "v1.30.14-eks-b707fbb"]]


@pytest.mark.usefixtures("cluster")
def test_get_pods_in_all_namespaces_wide(kubectl: Any) -> None:
    rows = _table(kubectl("get", "pods", "-A", "-o", "wide").stdout)
    assert rows[0] == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED",
                       "NODE", "READINESS", "GATES"]
    assert [(r[0], r[1], r[2], r[3], r[6], r[7]) for r in rows[1:]] == [
        ("default", "web-n1", "1/1", "Running", "10.0.1.5", "n1"),
        ("default", "web-n2", "1/1", "Running", "10.0.2.5", "n2"),
        ("kube-system", "aws-node-n1", "1/1", "Running", "10.0.0.1", "n1"),
        ("kube-system", "aws-node-n2", "1/1", "Running", "10.0.0.1", "n2")]


@pytest.mark.usefixtures("cluster")
def test_get_daemonsets_and_field_selected_pods(kubectl: Any) -> None:
    rows = _table(kubectl("get", "ds", "-n", "kube-system").stdout)
    assert rows[0][:6] == ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE"]
    assert rows[1] [:6] == ["aws-node", "2", "2", "1", "2", "1"]
    names = kubectl("get", "pods", "-A", "--field-selector", "spec.nodeName=n2", "-o", "name").stdout.split()
    assert names == ["pod/web-n2", "pod/aws-node-n2"]


@pytest.mark.usefixtures("cluster")
def test_cordon_uncordon_and_label(kubectl: Any, store: Store) -> None:
    assert "node/n1 cordoned" in kubectl("cordon", "n1").stdout
    assert store.must_get(NODES, None, "n1")["spec"]["unschedulable"] is True
    assert not store.must_get(NODES, None, "n2")["spec"].get("unschedulable")
    kubectl("uncordon", "n1")
    assert not store.must_get(NODES, None, "n1")["spec"].get("unschedulable")
    kubectl("label", "node", "n1", "cni=aws-cni")
    assert store.must_get(NODES, None, "n1")["metadata"]["labels"]["cni"] == "aws-cni"
    assert kubectl("get", "nodes", "-l", "cni=aws-cni", "-o", "name").stdout.split() == ["node/n1"]
    kubectl("label", "node", "n1", "cni-")
    assert "cni" not in store.must_get(NODES, None, "n1")["metadata"]["labels"]


def test_apply_scale_and_delete(kubectl: Any, store: Store, tmp_path: Path) -> None:
    manifest = tmp_path / "web.yaml"
    manifest.write_text("""
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "nginx:1.27"}]}
""")
    assert "deployment.apps/web created" in kubectl("apply", "--validate=false", "-f", str(manifest)).stdout
    assert "unchanged" in kubectl("apply", "--validate=false", "-f", str(manifest)).stdout
    kubectl("scale", "deployment/web", "--replicas=5")
    assert store.must_get(DEPLOYMENTS, "default", "web")["spec"]["replicas"] == 5
    kubectl("delete", "deployment", "web")
    assert store.get(DEPLOYMENTS, "default", "web") is None


@pytest.mark.usefixtures("cluster")
def test_drain_evicts_workloads_and_skips_daemonset_pods(kubectl: Any, store: Store,
                                                         api_server: ApiServer) -> None:
    result = kubectl("drain", "n1", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=30s")
    assert "node/n1 drained" in result.stdout
    assert store.must_get(NODES, None, "n1")["spec"]["unschedulable"] is True
    assert [p["metadata"]["name"] for p in store.list(PODS, node_name="n1")[0]] == ["aws-node-n1"]
    evictions = [(r.namespace, r.name) for r in api_server.request_log if r.subresource == "eviction"]
    assert evictions == [("default", "web-n1")]


def test_drain_waits_for_the_disruption_budget(kubectl: Any, objects: Any, cluster: dict[str, Any],
                                               store: Store, api_server: ApiServer) -> None:
    objects.pdb("web-pdb", {"app": "web"}, min_available=2)
    drain = subprocess.Popen(["/usr/bin/kubectl", "drain", "n1", "--ignore-daemonsets", "--delete-emptydir-data",
                              "--timeout=40s"], env=kubectl.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        deadline = time.monotonic() + 20
        while not any(r.subresource == "eviction" and r.code == 429 for r in api_server.request_log):
            assert time.monotonic() < deadline, "kubectl never tried to evict"
            time.sleep(0.1)
        assert store.get(PODS, "default", "web-n1") is not None  # refused, still there
        objects.pod("web-extra", "n2", labels={"app": "web"}, owner=cluster["rs"])  # budget now allows one
        out, err = drain.communicate(timeout=30)
    finally:
        if drain.poll() is None:
            drain.kill()
            drain.communicate()
    assert drain.returncode == 0, err
    assert "node/n1 drained" in out
    assert store.get(PODS, "default", "web-n1") is None
    codes = [r.code for r in api_server.request_log if r.subresource == "eviction"]
    assert codes[0] == 429 and codes[-1] == 201
    assert store.get(PDBS, "default", "web-pdb") is not None
