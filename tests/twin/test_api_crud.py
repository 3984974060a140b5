"""The API server's CRUD contract through the official client over HTTP.

Covers: /version and health endpoints; discovery (legacy and aggregated); create / get / replace /
delete for core, apps and policy types; status and scale subresources; 409 on a stale
resourceVersion; dryRun=All leaving the store untouched; DeleteOptions (uid precondition, Status
answers); Kubernetes Status error bodies and codes; bearer-token auth; injected API faults.
"""

from __future__ import annotations

import json
import urllib.request

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from twin.apiserver import ApiServer
from twin.faults import ApiFault, Faults
from twin.resources import CONFIGMAPS, DEPLOYMENTS, NODES, PODS
from twin.store import Store


def _pod(name: str, labels: dict[str, str] | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}


def _deployment(name: str, replicas: int = 2) -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}}}


TOKEN = "twin-test-token"  # the api_server fixture's


def _raw(url: str, path: str, token: str | None = TOKEN, accept: str = "application/json") -> tuple[int, dict]:
    req = urllib.request.Request(url + path, headers={"Accept": accept})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


# ---- server identity ---------------------------------------------------------------------------

def test_version_is_a_full_version_info(kube_client: kubernetes.client.ApiClient) -> None:
    info = kubernetes.client.VersionApi(kube_client).get_code()
    assert (info.major, info.minor) == ("1", "30+")
    assert info.git_version.startswith("v1.30.") and "-eks-" in info.git_version
    assert info.build_date and info.go_version and info.platform == "linux/amd64"


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/livez"])
def test_health_endpoints_answer_ok_without_a_token(api_server: ApiServer, path: str) -> None:
    with urllib.request.urlopen(api_server.url + path, timeout=5) as resp:
        assert resp.read() == b"ok"


def test_legacy_discovery_lists_resources_and_subresources(kube_client: kubernetes.client.ApiClient) -> None:
    core = kubernetes.client.CoreV1Api(kube_client).get_api_resources()
    by_name = {r.name: r for r in core.resources}
    assert by_name["pods"].short_names == ["po"] and by_name["pods"].namespaced
    assert by_name["nodes"].namespaced is False
    assert (by_name["pods/eviction"].group, by_name["pods/eviction"].kind) == ("policy", "Eviction")
    assert "pods/status" in by_name and "services/proxy" in by_name
    apps = kubernetes.client.AppsV1Api(kube_client).get_api_resources()
    scale = next(r for r in apps.resources if r.name == "deployments/scale")
    assert (scale.group, scale.kind) == ("autoscaling", "Scale")
    groups = kubernetes.client.ApisApi(kube_client).get_api_versions()
    assert {"apps", "policy", "cilium.io"} <= {g.name for g in groups.groups}


def test_aggregated_discovery_is_answered_when_asked_for(api_server: ApiServer) -> None:
    accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    code, body = _raw(api_server.url, "/apis", accept=accept)
    assert code == 200 and body["kind"] == "APIGroupDiscoveryList"
    apps = next(i for i in body["items"] if i["metadata"]["name"] == "apps")
    deployments = next(r for r in apps["versions"][0]["resources"] if r["resource"] == "deployments")
    assert {s["subresource"] for s in deployments["subresources"]} == {"status", "scale"}


def test_openapi_is_not_served(api_server: ApiServer) -> None:
    assert _raw(api_server.url, "/openapi/v3")[0] == 404


# ---- create / get / replace / delete -------------------------------------------------------------

def test_create_get_and_list_a_pod(core: kubernetes.client.CoreV1Api, store: Store) -> None:
    created = core.create_namespaced_pod("default", _pod("web"))
    assert created.metadata.uid and created.metadata.resource_version
    assert created.status.phase == "Pending"  # status is reset on create, as the real registry does
    assert created.spec.service_account_name == "default"
    assert core.read_namespaced_pod("web", "default").metadata.uid == created.metadata.uid
    listed = core.list_namespaced_pod("default")
    assert [p.metadata.name for p in listed.items] == ["web"]
    assert int(listed.metadata.resource_version) >= int(created.metadata.resource_version)
    assert store.get(PODS, "default", "web") is not None


def test_cluster_wide_list_spans_namespaces(core: kubernetes.client.CoreV1Api) -> None:
    core.create_namespaced_pod("default", _pod("a"))
    core.create_namespaced_pod("kube-system", _pod("b"))
    assert sorted(p.metadata.name for p in core.list_pod_for_all_namespaces().items) == ["a", "b"]


def test_replace_with_a_stale_resource_version_is_a_conflict(core: kubernetes.client.CoreV1Api) -> None:
    cm = core.create_namespaced_config_map("default", {"metadata": {"name": "cfg"}, "data": {"k": "1"}})
    cm.data = {"k": "2"}
    updated = core.replace_namespaced_config_map("cfg", "default", cm)
    assert updated.data == {"k": "2"}
    cm.data = {"k": "3"}  # still carries the first resourceVersion
    with pytest.raises(ApiException) as err:
        core.replace_namespaced_config_map("cfg", "default", cm)
    assert err.value.status == 409
    assert json.loads(err.value.body)["reason"] == "Conflict"
    assert core.read_namespaced_config_map("cfg", "default").data == {"k": "2"}


def test_replace_keeps_status_and_status_subresource_changes_only_status(
        apps: kubernetes.client.AppsV1Api) -> None:
    apps.create_namespaced_deployment("default", _deployment("web"))
    apps.patch_namespaced_deployment_status("web", "default", {"status": {"readyReplicas": 2, "replicas": 2}})
    current = apps.read_namespaced_deployment("web", "default")
    current.spec.replicas = 3
    current.status.ready_replicas = 0  # ignored on the main resource
    replaced = apps.replace_namespaced_deployment("web", "default", current)
    assert replaced.spec.replicas == 3 and replaced.status.ready_replicas == 2
    assert replaced.metadata.generation == 2
    status = apps.read_namespaced_deployment_status("web", "default")
    status.spec.replicas = 9  # ignored on the status subresource
    status.status.ready_replicas = 1
    after = apps.replace_namespaced_deployment_status("web", "default", status)
    assert after.spec.replicas == 3 and after.status.ready_replicas == 1


def test_scale_subresource_reads_and_writes_replicas(apps: kubernetes.client.AppsV1Api, store: Store) -> None:
    apps.create_namespaced_deployment("default", _deployment("web", replicas=2))
    scale = apps.read_namespaced_deployment_scale("web", "default")
    assert scale.spec.replicas == 2 and scale.status.selector == "app=web"
    apps.patch_namespaced_deployment_scale("web", "default", {"spec": {"replicas": 5}})
    assert store.must_get(DEPLOYMENTS, "default", "web")["spec"]["replicas"] == 5
    scale = apps.read_namespaced_deployment_scale("web", "default")
    scale.spec.replicas = 1
    assert apps.replace_namespaced_deployment_scale("web", "default", scale).spec.replicas == 1
    with pytest.raises(ApiException) as err:
        apps.patch_namespaced_deployment_scale("web", "default", {"spec": {"replicas": -1}})
    assert err.value.status == 422


def test_delete_returns_the_pod_and_a_status_for_a_deployment(
        core: kubernetes.client.CoreV1Api, apps: kubernetes.client.AppsV1Api, store: Store) -> None:
    core.create_namespaced_pod("default", _pod("web"))
    assert core.delete_namespaced_pod("web", "default").metadata.name == "web"
    apps.create_namespaced_deployment("default", _deployment("api"))
    status = apps.delete_namespaced_deployment("api", "default", propagation_policy="Foreground")
    assert status.status == "Success" and status.details.name == "api"
    assert store.get(PODS, "default", "web") is None and store.get(DEPLOYMENTS, "default", "api") is None


def test_delete_with_a_wrong_uid_precondition_is_a_conflict(core: kubernetes.client.CoreV1Api) -> None:
    core.create_namespaced_pod("default", _pod("web"))
    body = kubernetes.client.V1DeleteOptions(preconditions=kubernetes.client.V1Preconditions(uid="not-it"))
    with pytest.raises(ApiException) as err:
        core.delete_namespaced_pod("web", "default", body=body)
    assert err.value.status == 409
    assert core.read_namespaced_pod("web", "default")


def test_delete_collection_honours_the_label_selector(core: kubernetes.client.CoreV1Api) -> None:
    for name, tier in [("a", "web"), ("b", "web"), ("c", "db")]:
        core.create_namespaced_pod("default", _pod(name, {"tier": tier}))
    core.delete_collection_namespaced_pod("default", label_selector="tier=web")
    assert [p.metadata.name for p in core.list_namespaced_pod("default").items] == ["c"]


# ---- dry run -------------------------------------------------------------------------------------

def test_dry_run_changes_nothing(core: kubernetes.client.CoreV1Api, store: Store) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "cfg"}, "data": {"k": "1"}})
    before = store.dump()
    rv = store.resource_version
    created = core.create_namespaced_config_map("default", {"metadata": {"name": "new"}}, dry_run="All")
    assert created.metadata.name == "new"
    patched = core.patch_namespaced_config_map("cfg", "default", {"data": {"k": "2"}}, dry_run="All")
    assert patched.data == {"k": "2"}
    core.delete_namespaced_config_map("cfg", "default", dry_run="All")
    core.delete_collection_namespaced_config_map("default", dry_run="All")
    assert store.dump() == before and store.resource_version == rv
    assert store.must_get(CONFIGMAPS, "default", "cfg")["data"] == {"k": "1"}


# ---- errors --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("call", "code", "reason"), [
    pytest.param(lambda c: c.read_namespaced_pod("nope", "default"), 404, "NotFound", id="get-missing"),
    pytest.param(lambda c: c.create_namespaced_pod("nope", _pod("x")), 404, "NotFound", id="missing-namespace"),
    pytest.param(lambda c: c.create_namespaced_pod("default", {"metadata": {}, "spec": {}}), 422, "Invalid",
                 id="missing-name"),
    pytest.param(lambda c: c.create_namespaced_pod("default", _pod("Bad_Name")), 422, "Invalid", id="bad-name"),
    pytest.param(lambda c: c.create_namespaced_pod("default", {**_pod("x"), "kind": "Service"}), 400,
                 "BadRequest", id="wrong-kind"),
    pytest.param(lambda c: c.list_namespaced_pod("default", label_selector="a in (b"), 400, "BadRequest",
                 id="bad-label-selector"),
    pytest.param(lambda c: c.list_namespaced_pod("default", field_selector="spec.image=x"), 400, "BadRequest",
                 id="unsupported-field"),
    pytest.param(lambda c: c.list_namespaced_pod("default", _continue="garbage"), 410, "Expired",
                 id="bad-continue"),
    pytest.param(lambda c: c.create_namespaced_pod("default", _pod("x"), dry_run="Some"), 400, "BadRequest",
                 id="bad-dry-run"),
])
def test_errors_are_status_bodies(core: kubernetes.client.CoreV1Api, call, code: int, reason: str) -> None:
    with pytest.raises(ApiException) as err:
        call(core)
    assert err.value.status == code
    body = json.loads(err.value.body)
    assert (body["kind"], body["apiVersion"], body["status"]) == ("Status", "v1", "Failure")
    assert (body["code"], body["reason"]) == (code, reason) and body["message"]


def test_create_of_an_existing_name_is_already_exists(core: kubernetes.client.CoreV1Api) -> None:
    core.create_namespaced_pod("default", _pod("web"))
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod("default", _pod("web"))
    assert err.value.status == 409 and json.loads(err.value.body)["reason"] == "AlreadyExists"


def test_unknown_paths_and_methods(api_server: ApiServer) -> None:
    assert _raw(api_server.url, "/api/v1/widgets")[0] == 404
    req = urllib.request.Request(api_server.url + "/api/v1/namespaces/default/pods/x", method="POST",
                                 data=b"{}", headers={"Authorization": f"Bearer {TOKEN}"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code == 405


def test_a_missing_or_wrong_token_is_401(api_server: ApiServer) -> None:
    assert _raw(api_server.url, "/api/v1/nodes", token=None)[0] == 401
    code, body = _raw(api_server.url, "/api/v1/nodes", token="wrong")
    assert code == 401 and body["reason"] == "Unauthorized"
    assert _raw(api_server.url, "/api/v1/nodes")[0] == 200


@pytest.mark.parametrize("status", [pytest.param(500, id="500"), pytest.param(503, id="503")])
def test_injected_faults_answer_a_burst_then_recover(core: kubernetes.client.CoreV1Api, faults: Faults,
                                                     store: Store, api_server: ApiServer, status: int) -> None:
    store.create(NODES, {"metadata": {"name": "n1"}})
    faults.api.append(ApiFault(path=r"^/api/v1/nodes", status=status, count=2, method="GET"))
    for _ in range(2):
        with pytest.raises(ApiException) as err:
            core.list_node()
        assert err.value.status == status
        assert json.loads(err.value.body)["code"] == status
    assert [n.metadata.name for n in core.list_node().items] == ["n1"]
    assert [(r.verb, r.resource, r.code) for r in api_server.request_log] == [
        ("list", "nodes", status), ("list", "nodes", status), ("list", "nodes", 200)]


def test_a_429_fault_says_retry_after_and_the_client_honours_it(
        core: kubernetes.client.CoreV1Api, faults: Faults, store: Store, api_server: ApiServer) -> None:
    store.create(NODES, {"metadata": {"name": "n1"}})
    faults.api.append(ApiFault(path=r"^/api/v1/nodes$", status=429, count=1))
    code, body = _raw(api_server.url, "/api/v1/nodes")
    assert code == 429 and body["reason"] == "TooManyRequests" and body["details"]["retryAfterSeconds"] == 1
    faults.api.append(ApiFault(path=r"^/api/v1/nodes$", status=429, count=1))
    assert [n.metadata.name for n in core.list_node().items] == ["n1"]  # urllib3 waited and retried
    assert [r.code for r in api_server.request_log[-2:]] == [429, 200]


def test_request_log_records_verbs_and_resources(core: kubernetes.client.CoreV1Api,
                                                 api_server: ApiServer) -> None:
    core.create_namespaced_pod("default", _pod("web"))
    core.list_namespaced_pod("default", watch=False)
    core.patch_namespaced_pod("web", "default", {"metadata": {"labels": {"a": "b"}}})
    with pytest.raises(ApiException):
        core.read_namespaced_pod("nope", "default")
    records = [(r.verb, r.resource, r.namespace, r.name, r.code) for r in api_server.request_log]
    assert records == [("create", "pods", "default", "", 201), ("list", "pods", "default", "", 200),
                       ("patch", "pods", "default", "web", 200), ("get", "pods", "default", "nope", 404)]
    assert {r.user for r in api_server.request_log} == {"kubernetes-admin"}


def test_server_without_token_accepts_anonymous_requests(store: Store) -> None:
    server = ApiServer(store)
    server.start()
    try:
        assert _raw(server.url, "/api/v1/namespaces", token=None)[0] == 200
        assert server.request_log[-1].user == "system:anonymous"
    finally:
        server.stop()


def test_added_routes_serve_their_prefix_behind_the_token(api_server: ApiServer) -> None:
    calls = []

    def admin(method: str, path: str, query: dict[str, list[str]], body: bytes) -> tuple[int, str, bytes]:
        calls.append((method, path, query))
        return 200, "application/json", b'{"ok":true}'

    api_server.add_route("/_twin/", admin)
    assert _raw(api_server.url, "/_twin/faults?x=1") == (200, {"ok": True})
    assert calls == [("GET", "/_twin/faults", {"x": ["1"]})]
    assert _raw(api_server.url, "/_twin/faults", token=None)[0] == 401
