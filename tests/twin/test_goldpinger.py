"""The goldpinger model, reached as the DAG reaches it: the API server's service proxy and a direct port.

Covers: ``/check_all`` in goldpinger's own schema (hosts, responses, nested podResults, no top-level
OK) with N x N OK entries on a healthy mesh; under ``cross_cni_broken`` exactly the cross-CNI entries
fail, in every instance's ``/check`` and in ``/check_all`` (where instances the serving pod cannot
reach carry an error instead of results); PingTime advancing with each round; a pod without an IP;
``/healthz``, unknown paths, a missing Service (404) and no Ready instance (503); the direct port.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import kubernetes
import pytest

from twin.apiserver import ApiServer
from twin.config import FAST
from twin.controllers import DaemonSetController, Kubelet, run_until
from twin.controllers.base import pod_cni, pod_ready
from twin.faults import Faults
from twin.goldpinger import GoldpingerModel
from twin.resources import DAEMONSETS, NODES, PODS, SERVICES
from twin.store import Obj, Store

GOLDPINGER = {"app.kubernetes.io/name": "goldpinger", "app.kubernetes.io/instance": "goldpinger"}


def add_node(store: Store, index: int) -> str:
    name = f"ip-192-168-1-{index}.us-west-1.compute.internal"
    store.create(NODES, {
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                              "eks.amazonaws.com/nodegroup": "ng-1" if index < 6 else "ng-cilium"}},
        "spec": {"providerID": f"aws:///us-west-1a/i-0{index:015x}"},
        "status": {"addresses": [{"type": "InternalIP", "address": f"192.168.1.{index}"}],
                   "allocatable": {"pods": "29"}, "conditions": [{"type": "Ready", "status": "True"}]}})
    return name


def add_ready_agent(store: Store, node: str, index: int, cni: str) -> None:
    app = "cilium" if cni == "cilium" else "aws-node"
    store.create(PODS, {
        "metadata": {"name": f"{app}-{index}", "namespace": "kube-system", "labels": {"k8s-app": app}},
        "spec": {"nodeName": node, "hostNetwork": True, "containers": [{"name": app, "image": f"{app}:1"}]},
        "status": {"phase": "Running", "podIP": f"192.168.1.{index}", "hostIP": f"192.168.1.{index}",
                   "conditions": [{"type": "Ready", "status": "True"}]}})


def goldpinger_ds() -> Obj:
    """The runbook's goldpinger DaemonSet (abridged)."""
    return {"metadata": {"name": "goldpinger", "namespace": "default", "labels": GOLDPINGER},
            "spec": {"selector": {"matchLabels": GOLDPINGER},
                     "template": {"metadata": {"labels": GOLDPINGER}, "spec": {
                         "serviceAccountName": "goldpinger",
                         "containers": [{"name": "goldpinger-daemon", "image": "mauilion/goldpinger:v3.5.1",
                                         "env": [{"name": "HOST", "value": "0.0.0.0"},
                                                 {"name": "PORT", "value": "8080"},
                                                 {"name": "LABEL_SELECTOR", "value": "app.kubernetes.io/name=goldpinger"},
                                                 {"name": "REFRESH_INTERVAL", "value": "5"}],
                                         "ports": [{"containerPort": 8080, "name": "http"}]}]}}}}


@pytest.fixture
def mesh(store: Store, faults: Faults) -> Iterator[GoldpingerModel]:
    """Two aws-cni nodes (4, 5), two Cilium nodes (6, 7), a goldpinger pod Running on each."""
    for i in (4, 5, 6, 7):
        add_ready_agent(store, add_node(store, i), i, "aws-cni" if i < 6 else "cilium")
    store.create(SERVICES, {"metadata": {"name": "goldpinger", "namespace": "default", "labels": GOLDPINGER},
                            "spec": {"type": "ClusterIP", "selector": GOLDPINGER,
                                     "ports": [{"name": "http", "port": 8080, "targetPort": "http"}]}})
    store.create(DAEMONSETS, goldpinger_ds())
    chain = [DaemonSetController(store, FAST, faults), Kubelet(store, FAST, faults)]
    run_until(chain, lambda: len([p for p in store.list(PODS, "default")[0] if pod_ready(p)]) == 4,
              what="4 goldpinger pods Ready")
    model = GoldpingerModel(store, FAST, faults)
    yield model
    model.stop()


@pytest.fixture
def proxied(mesh: GoldpingerModel, api_server: ApiServer) -> GoldpingerModel:
    api_server.add_service_proxy(mesh.proxy_handler)
    return mesh


def via_proxy(kube_client: kubernetes.client.ApiClient, path: str, service: str = "goldpinger:8080") -> Any:
    core = kubernetes.client.CoreV1Api(kube_client)
    resp = core.connect_get_namespaced_service_proxy_with_path(service, "default", path, _preload_content=False)
    return json.loads(resp.data)


def instances(store: Store) -> dict[str, Obj]:
    return {p["metadata"]["name"]: p for p in store.list(PODS, "default")[0]}


def age_s(stamp: str) -> float:
    when = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return (datetime.now(UTC) - when).total_seconds()


def test_healthy_mesh_is_n_by_n_ok_in_goldpingers_schema(proxied: GoldpingerModel, store: Store,
                                                         kube_client: kubernetes.client.ApiClient) -> None:
    body = via_proxy(kube_client, "check_all")
    pods = instances(store)
    assert set(body) == {"hosts", "responses"}
    assert sorted(h["podName"] for h in body["hosts"]) == sorted(pods)
    for host in body["hosts"]:
        status = pods[host["podName"]]["status"]
        assert (host["podIP"], host["hostIP"]) == (status["podIP"], status["hostIP"])
    assert set(body["responses"]) == set(pods)
    for name, response in body["responses"].items():
        assert response["OK"] is True and response["PodIP"] == pods[name]["status"]["podIP"]
        results = response["response"]["podResults"]
        assert set(results) == set(pods)
        for peer, result in results.items():
            assert result["OK"] is True and result["status-code"] == 200 and "error" not in result
            assert result["PodIP"] == pods[peer]["status"]["podIP"]
            assert result["HostIP"] == pods[peer]["status"]["hostIP"]
            assert isinstance(result["response-time-ms"], int)
            assert age_s(result["PingTime"]) < 5


def test_cross_cni_fault_fails_exactly_the_cross_cni_entries(proxied: GoldpingerModel, store: Store,
                                                             faults: Faults,
                                                             kube_client: kubernetes.client.ApiClient) -> None:
    faults.cross_cni_broken = True
    proxied.refresh(force=True)
    pods = instances(store)
    assert sorted(str(pod_cni(p)) for p in pods.values()) == ["aws-cni", "aws-cni", "cilium", "cilium"]
    failing = 0
    for name, pod in pods.items():
        view = proxied.check("default", pod=name)
        assert view is not None and set(view["podResults"]) == set(pods)
        for peer, result in view["podResults"].items():
            same = pod_cni(pods[peer]) == pod_cni(pod)
            assert result["OK"] is same, (name, peer)
            if not same:
                failing += 1
                assert result["status-code"] == 504 and "context deadline exceeded" in result["error"]
    assert failing == 8  # 2 x 2 pairs each way
    body = via_proxy(kube_client, "check_all")
    server = proxied.serving_instance("default")
    assert server is not None
    for name, response in body["responses"].items():
        if pod_cni(pods[name]) == pod_cni(server):
            assert response["OK"] is True
            assert [p for p, r in response["response"]["podResults"].items() if not r["OK"]] == [
                p for p in pods if pod_cni(pods[p]) != pod_cni(pods[name])]
        else:
            assert response["OK"] is False and "response" not in response
            assert response["error"].endswith("(Client.Timeout exceeded while awaiting headers)")


def test_ping_time_advances_with_each_round(mesh: GoldpingerModel) -> None:
    first = mesh.check_all("default")
    time.sleep(FAST.goldpinger_refresh_s * 1.5)
    second = mesh.check_all("default")
    assert first is not None and second is not None

    def stamps(body: dict[str, Any]) -> set[str]:
        return {r["PingTime"] for resp in body["responses"].values() for r in resp["response"]["podResults"].values()}
    assert len(stamps(first)) == len(stamps(second)) == 1
    assert stamps(second).pop() > stamps(first).pop()


def test_a_pod_without_an_ip_fails_as_goldpinger_reports_it(mesh: GoldpingerModel, store: Store) -> None:
    store.create(PODS, {"metadata": {"name": "goldpinger-pending", "namespace": "default", "labels": GOLDPINGER},
                        "spec": {"containers": [{"name": "goldpinger-daemon", "image": "goldpinger:3"}]},
                        "status": {"phase": "Pending"}})
    body = mesh.check_all("default")
    assert body is not None
    assert {"podName": "goldpinger-pending"} in body["hosts"]
    assert body["responses"]["goldpinger-pending"] == {
        "OK": False, "error": "Host or pod IP empty, can't make a call"}
    for name, response in body["responses"].items():
        if name != "goldpinger-pending":
            result = response["response"]["podResults"]["goldpinger-pending"]
            assert (result["OK"], result["status-code"], result["error"]) == (
                False, 500, "Host or pod IP empty, can't make a call")


@pytest.mark.parametrize(("path", "status"), [
    pytest.param("healthz", 200, id="healthz"),
    pytest.param("check", 200, id="check"),
    pytest.param("metrics2", 404, id="unknown-path"),
])
def test_paths(proxied: GoldpingerModel, path: str, status: int) -> None:
    answer = proxied.proxy_handler("default", "goldpinger", "", path, {})
    assert answer is not None
    code, content_type, body = answer
    assert (code, content_type) == (status, "application/json")
    if path == "check":
        assert set(json.loads(body)) == {"podResults"}


def test_missing_service_is_404_and_no_ready_instance_is_503(proxied: GoldpingerModel, store: Store,
                                                             kube_client: kubernetes.client.ApiClient) -> None:
    assert proxied.proxy_handler("default", "web", "", "check_all", {}) is None
    for pod in store.list(PODS, "default")[0]:
        store.mutate(PODS, "default", pod["metadata"]["name"],
                     lambda p: p["status"].update(conditions=[{"type": "Ready", "status": "False"}]),
                     subresource="status")
    with pytest.raises(kubernetes.client.ApiException) as unavailable:
        via_proxy(kube_client, "check_all")
    assert unavailable.value.status == 503
    store.delete(SERVICES, "default", "goldpinger")
    with pytest.raises(kubernetes.client.ApiException) as missing:
        via_proxy(kube_client, "check_all")
    assert missing.value.status == 404


def test_direct_port(mesh: GoldpingerModel, store: Store) -> None:
    _, port = mesh.serve_direct("127.0.0.1", 0)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/check_all", timeout=5) as resp:
        body = json.loads(resp.read())
    assert set(body["responses"]) == set(instances(store))
    mesh.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
