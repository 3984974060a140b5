"""The service proxy and server-side printing (Tables), through the official client.

Covers: ``GET .../services/{name}:{port}/proxy/{path}`` dispatched to registered handlers with the
port and query, the next handler tried when one declines, 503 when none answers, 404 for a missing
service; Tables for nodes, pods, daemonsets, deployments and the NAME/AGE default, wide-only columns
marked ``priority: 1``, and ``includeObject`` (Object, Metadata, None).
"""

from __future__ import annotations

import json
from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from twin.apiserver import ApiServer
from twin.resources import SERVICES
from twin.store import Store

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


@pytest.fixture
def goldpinger(store: Store, api_server: ApiServer) -> list[tuple[str, ...]]:
    """A goldpinger service with a proxy handler that records its calls."""
    store.create(SERVICES, {"metadata": {"name": "goldpinger", "namespace": "default"},
                            "spec": {"ports": [{"port": 8080}]}})
    calls: list[tuple[str, ...]] = []

    def declines(namespace: str, service: str, port: str, path: str, query: dict[str, list[str]]) -> None:
        calls.append(("declined", service))
        return None

    def answers(namespace: str, service: str, port: str, path: str,
                query: dict[str, list[str]]) -> tuple[int, str, bytes] | None:
        if service != "goldpinger":
            return None
        calls.append((namespace, service, port, path, ",".join(query.get("timeout", []))))
        return 200, "application/json", json.dumps({"responses": {"p1": {"OK": True}}}).encode()

    api_server.add_service_proxy(declines)
    api_server.add_service_proxy(answers)
    return calls


def test_proxy_reaches_the_handler_with_port_path_and_query(core: kubernetes.client.CoreV1Api,
                                                            goldpinger: list[tuple[str, ...]]) -> None:
    resp = core.connect_get_namespaced_service_proxy_with_path("goldpinger:8080", "default", "check_all",
                                                               path2="check_all", _preload_content=False)
    assert json.loads(resp.data) == {"responses": {"p1": {"OK": True}}}
    assert goldpinger == [("declined", "goldpinger"), ("default", "goldpinger", "8080", "check_all", "")]


def test_proxy_without_an_answering_handler_is_503(core: kubernetes.client.CoreV1Api, store: Store,
                                                    goldpinger: list[tuple[str, ...]]) -> None:
    store.create(SERVICES, {"metadata": {"name": "other", "namespace": "default"}, "spec": {}})
    with pytest.raises(ApiException) as err:
        core.connect_get_namespaced_service_proxy_with_path("other:80", "default", "x", path2="x")
    assert err.value.status == 503
    assert json.loads(err.value.body)["message"] == 'no endpoints available for service "other:80"'
    with pytest.raises(ApiException) as err:
        core.connect_get_namespaced_service_proxy_with_path("missing:80", "default", "x", path2="x")
    assert err.value.status == 404


# ---- tables ------------------------------------------------------------------------------------

def _table(client: kubernetes.client.ApiClient, path: str, **query: str) -> dict[str, Any]:
    resp = client.call_api(path, "GET", query_params=list(query.items()), header_params={"Accept": TABLE},
                           auth_settings=["BearerToken"], _preload_content=False, _return_http_data_only=True)
    return json.loads(resp.data)


def _columns(table: dict[str, Any], wide: bool = False) -> list[str]:
    return [c["name"] for c in table["columnDefinitions"] if wide or c["priority"] == 0]


@pytest.mark.parametrize(("path", "columns", "wide_only"), [
    pytest.param("/api/v1/nodes", ["Name", "Status", "Roles", "Age", "Version"],
                 ["Internal-IP", "External-IP", "OS-Image", "Kernel-Version", "Container-Runtime"], id="nodes"),
    pytest.param("/api/v1/pods", ["Name", "Ready", "Status", "Restarts", "Age"],
                 ["IP", "Node", "Nominated Node", "Readiness Gates"], id="pods"),
    pytest.param("/apis/apps/v1/daemonsets", ["Name", "Desired", "Current", "Ready", "Up-to-date", "Available",
                                              "Node Selector", "Age"], ["Containers", "Images", "Selector"],
                 id="daemonsets"),
    pytest.param("/apis/apps/v1/deployments", ["Name", "Ready", "Up-to-date", "Available", "Age"],
                 ["Containers", "Images", "Selector"], id="deployments"),
    pytest.param("/apis/rbac.authorization.k8s.io/v1/clusterroles", ["Name", "Age"], [], id="default"),
])
def test_table_columns(kube_client: kubernetes.client.ApiClient, path: str, columns: list[str],
                       wide_only: list[str]) -> None:
    table = _table(kube_client, path)
    assert (table["kind"], table["apiVersion"]) == ("Table", "meta.k8s.io/v1")
    assert _columns(table) == columns
    assert _columns(table, wide=True) == columns + wide_only


def test_node_rows(kube_client: kubernetes.client.ApiClient, objects: Any) -> None:
    objects.node("n1", labels={"node-role.kubernetes.io/worker": ""})
    objects.node("n2", ready=False, unschedulable=True, ip="192.168.1.11")
    rows = [r["cells"] for r in _table(kube_client, "/api/v1/nodes")["rows"]]
    assert [r[:3] + [r[4], r[5]] for r in rows] == [
        ["n1", "Ready", "worker", "v1.30.14-eks-b707fbb", "192.168.1.10"],
        ["n2", "NotReady,SchedulingDisabled", "<none>", "v1.30.14-eks-b707fbb", "192.168.1.11"]]


def test_pod_rows_and_include_object(kube_client: kubernetes.client.ApiClient, objects: Any) -> None:
    objects.pod("web", "n1", ip="10.0.0.7")
    objects.pod("pending", None)
    table = _table(kube_client, "/api/v1/namespaces/default/pods")
    cells = {r["cells"][0]: r["cells"] for r in table["rows"]}
    assert cells["web"][1:4] == ["1/1", "Running", 0] and cells["web"][5:7] == ["10.0.0.7", "n1"]
    assert cells["pending"][1:3] == ["0/1", "Pending"] and cells["pending"][6] == "<none>"
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    assert table["rows"][0]["object"]["metadata"]["namespace"] == "default"
    full = _table(kube_client, "/api/v1/namespaces/default/pods", includeObject="Object")
    assert full["rows"][1]["object"]["spec"]["nodeName"] == "n1"
    bare = _table(kube_client, "/api/v1/namespaces/default/pods", includeObject="None")
    assert all("object" not in r for r in bare["rows"])
