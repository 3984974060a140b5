"""PATCH through the official client: strategic merge (its default for dict bodies), JSON merge,
JSON patch (its default for list bodies), directives, conflicts and unsupported types.

The strategic merge rules checked here are the ones the DAG and kubectl rely on: containers, env and
conditions merge by key, tolerations and taints are replaced, ``$patch: delete`` removes one item,
``null`` removes a key.
"""

from __future__ import annotations

import json
from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from twin.api.patching import merge_patch, strategic_merge_patch
from twin.resources import DAEMONSETS, NODES
from twin.store import Store


@pytest.fixture
def daemonset(store: Store) -> dict[str, Any]:
    return store.create(DAEMONSETS, {
        "metadata": {"name": "aws-node", "namespace": "kube-system", "labels": {"k8s-app": "aws-node"}},
        "spec": {"selector": {"matchLabels": {"k8s-app": "aws-node"}}, "template": {
            "metadata": {"labels": {"k8s-app": "aws-node"}},
            "spec": {
                "containers": [
                    {"name": "aws-node", "image": "vpc-cni:1.18", "env": [{"name": "A", "value": "1"},
                                                                         {"name": "B", "value": "2"}]},
                    {"name": "aws-eks-nodeagent", "image": "agent:1"}],
                "tolerations": [{"operator": "Exists"}],
            }}}})


def _call_patch(client: kubernetes.client.ApiClient, path: str, body: Any, content_type: str) -> Any:
    if not content_type.endswith("json"):
        body = json.dumps(body)  # the client sends other media types only as strings
    resp = client.call_api(path, "PATCH", header_params={"Content-Type": content_type, "Accept": "application/json"},
                           body=body, auth_settings=["BearerToken"], _preload_content=False,
                           _return_http_data_only=True)
    return json.loads(resp.data)


def test_dict_bodies_are_strategic_merge_patches(apps: kubernetes.client.AppsV1Api, daemonset: Any,
                                                 store: Store) -> None:
    patch = {"spec": {"template": {"spec": {
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "cni", "operator": "In", "values": ["aws-cni"]}]}]}}},
        "containers": [{"name": "aws-node", "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]}],
    }}}}
    apps.patch_namespaced_daemon_set("aws-node", "kube-system", patch)
    spec = store.must_get(DAEMONSETS, "kube-system", "aws-node")["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == ["aws-node", "aws-eks-nodeagent"]
    assert spec["containers"][0]["image"] == "vpc-cni:1.18"
    assert spec["containers"][0]["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "3"},
                                            {"name": "C", "value": "4"}]
    assert spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert store.must_get(DAEMONSETS, "kube-system", "aws-node")["metadata"]["generation"] == 2


def test_list_bodies_are_json_patches(apps: kubernetes.client.AppsV1Api, daemonset: Any, store: Store) -> None:
    apps.patch_namespaced_daemon_set("aws-node", "kube-system", [
        {"op": "replace", "path": "/spec/template/spec/containers/1/image", "value": "agent:2"},
        {"op": "add", "path": "/metadata/labels/cni", "value": "aws"},
    ])
    stored = store.must_get(DAEMONSETS, "kube-system", "aws-node")
    assert stored["spec"]["template"]["spec"]["containers"][1]["image"] == "agent:2"
    assert stored["metadata"]["labels"]["cni"] == "aws"


def test_a_failing_json_patch_test_op_is_rejected_and_changes_nothing(
        apps: kubernetes.client.AppsV1Api, daemonset: Any, store: Store) -> None:
    before = store.must_get(DAEMONSETS, "kube-system", "aws-node")
    with pytest.raises(ApiException) as err:
        apps.patch_namespaced_daemon_set("aws-node", "kube-system", [
            {"op": "test", "path": "/spec/template/spec/containers/0/image", "value": "other"},
            {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "x"}])
    assert err.value.status == 422
    assert store.must_get(DAEMONSETS, "kube-system", "aws-node") is before


def test_merge_patch_replaces_lists_and_null_deletes(kube_client: kubernetes.client.ApiClient, daemonset: Any,
                                                     store: Store) -> None:
    body = {"metadata": {"labels": {"k8s-app": None, "team": "net"}},
            "spec": {"template": {"spec": {"containers": [{"name": "only", "image": "x:1"}]}}}}
    _call_patch(kube_client, "/apis/apps/v1/namespaces/kube-system/daemonsets/aws-node", body,
                "application/merge-patch+json")
    stored = store.must_get(DAEMONSETS, "kube-system", "aws-node")
    assert stored["metadata"]["labels"] == {"team": "net"}
    assert stored["spec"]["template"]["spec"]["containers"] == [{"name": "only", "image": "x:1"}]


def test_node_taints_are_replaced_and_unschedulable_is_set(core: kubernetes.client.CoreV1Api,
                                                           store: Store) -> None:
    store.create(NODES, {"metadata": {"name": "n1"}, "spec": {"taints": [
        {"key": "node.cilium.io/agent-not-ready", "value": "true", "effect": "NoExecute"},
        {"key": "dedicated", "value": "x", "effect": "NoSchedule"}]}})
    core.patch_node("n1", {"spec": {"unschedulable": True,
                                    "taints": [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]}})
    spec = store.must_get(NODES, None, "n1")["spec"]
    assert spec == {"unschedulable": True, "taints": [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]}


def test_status_patch_merges_conditions_by_type(core: kubernetes.client.CoreV1Api, store: Store) -> None:
    store.create(NODES, {"metadata": {"name": "n1"}, "status": {"conditions": [
        {"type": "Ready", "status": "False"}, {"type": "MemoryPressure", "status": "False"}]}})
    core.patch_node_status("n1", {"status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    assert store.must_get(NODES, None, "n1")["status"]["conditions"] == [
        {"type": "Ready", "status": "True"}, {"type": "MemoryPressure", "status": "False"}]
    core.patch_node("n1", {"status": {"conditions": []}})  # the main resource ignores status
    assert len(store.must_get(NODES, None, "n1")["status"]["conditions"]) == 2


def test_patch_with_a_stale_resource_version_is_a_conflict(core: kubernetes.client.CoreV1Api,
                                                           store: Store) -> None:
    node = store.create(NODES, {"metadata": {"name": "n1"}})
    core.patch_node("n1", {"metadata": {"labels": {"a": "1"}}})
    with pytest.raises(ApiException) as err:
        core.patch_node("n1", {"metadata": {"labels": {"a": "2"},
                                            "resourceVersion": node["metadata"]["resourceVersion"]}})
    assert err.value.status == 409
    assert store.must_get(NODES, None, "n1")["metadata"]["labels"] == {"a": "1"}


@pytest.mark.parametrize(("content_type", "code"), [
    pytest.param("application/apply-patch+yaml", 415, id="server-side-apply"),
    pytest.param("text/plain", 415, id="unknown"),
])
def test_unsupported_patch_types_are_415(kube_client: kubernetes.client.ApiClient, store: Store,
                                         content_type: str, code: int) -> None:
    store.create(NODES, {"metadata": {"name": "n1"}})
    with pytest.raises(ApiException) as err:
        _call_patch(kube_client, "/api/v1/nodes/n1", {"metadata": {"labels": {"a": "b"}}}, content_type)
    assert err.value.status == code
    assert json.loads(err.value.body)["reason"] == "UnsupportedMediaType"


def test_patch_of_a_missing_object_is_404(core: kubernetes.client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as err:
        core.patch_node("nope", {"metadata": {"labels": {"a": "b"}}})
    assert err.value.status == 404


# ---- the merge rules themselves ------------------------------------------------------------------

@pytest.mark.parametrize(("target", "patch", "expected"), [
    pytest.param({"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]}},
                 {"spec": {"containers": [{"name": "b", "$patch": "delete"}]}},
                 {"spec": {"containers": [{"name": "a", "image": "1"}]}}, id="patch-delete-item"),
    pytest.param({"spec": {"tolerations": [{"key": "a", "operator": "Exists"}]}},
                 {"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}},
                 {"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}}, id="tolerations-replaced"),
    pytest.param({"spec": {"a": {"x": 1, "y": 2}}}, {"spec": {"a": {"$patch": "replace", "z": 3}}},
                 {"spec": {"a": {"z": 3}}}, id="patch-replace-map"),
    pytest.param({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}},
                 {"spec": {"containers": [{"name": "c"}, {"$patch": "replace"}]}},
                 {"spec": {"containers": [{"name": "c"}]}}, id="patch-replace-list"),
    pytest.param({"metadata": {"finalizers": ["a"]}}, {"metadata": {"finalizers": ["b", "a"]}},
                 {"metadata": {"finalizers": ["a", "b"]}}, id="finalizers-union"),
    pytest.param({"metadata": {"finalizers": ["a", "b"]}},
                 {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}},
                 {"metadata": {"finalizers": ["b"]}}, id="delete-from-primitive-list"),
    pytest.param({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}},
                 {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}},
                 {"spec": {"strategy": {"type": "Recreate"}}}, id="retain-keys"),
    pytest.param({"spec": {"ports": [{"containerPort": 80, "name": "http"}]}},
                 {"spec": {"$setElementOrder/ports": [{"containerPort": 80}, {"containerPort": 443}],
                           "ports": [{"containerPort": 443}]}},
                 {"spec": {"ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443}]}},
                 id="ports-by-container-port"),
    pytest.param({"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}]}},
                 {"metadata": {"ownerReferences": [{"uid": "1", "controller": True}]}},
                 {"metadata": {"ownerReferences": [{"uid": "1", "name": "a", "controller": True}]}},
                 id="owner-references-by-uid"),
    pytest.param({"a": {"b": 1, "c": 2}}, {"a": {"b": None}}, {"a": {"c": 2}}, id="null-deletes"),
])
def test_strategic_merge_rules(target: dict, patch: dict, expected: dict) -> None:
    assert strategic_merge_patch(target, patch) == expected


def test_json_merge_patch_is_rfc_7386() -> None:
    target = {"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]}
    patch = {"a": "z", "c": {"f": None}, "l": [3]}
    assert merge_patch(target, patch) == {"a": "z", "c": {"d": "e"}, "l": [3]}
    assert target == {"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]}  # not modified
