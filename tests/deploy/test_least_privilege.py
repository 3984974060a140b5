"""Least privilege: the RBAC evaluator, the twin's enforcement of it, and the shipped policies' shape.

Covered:
- ``twin.rbac`` decides as Kubernetes' RBAC authorizer: verbs, apiGroups, resources, subresources named
  with their resource and never implied by it, ``*`` wildcards, resourceNames (never matching nameless
  requests), a Role's namespace, non-resource URLs, the discovery every authenticated user may read;
  ``covers`` (the escalation check); the 403 message, word for word.
- A twin started with ``rbac=`` answers the RBAC token's requests through the official client: allowed
  ones as usual, denied ones 403 Forbidden with the API server's Status; the admin token is unaffected;
  the admin routes are not the RBAC user's; an unknown token is 401.
- ``deploy/rbac/clusterrole.yaml`` binds one User, ``cilium-migration``, with no wildcard and Secrets only
  in kube-system; ``deploy/iam-policy.json`` allows only named actions: EKS ones on the cluster's
  resources, IAM reads on roles and policies of the account (preflight's check of cilium-operator's
  EC2 permissions) and AWS managed policies.
(That the policies hold exactly what the DAG uses is checked on real runs in ``test_celery_run.py``.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import requests
import yaml
from kubernetes.client.exceptions import ApiException

from twin.rbac import (
    AUTHENTICATED_DEFAULTS,
    Policy,
    Rule,
    covers,
    forbidden_message,
    load_policy,
    policy_from,
)

ROOT = Path(__file__).resolve().parents[2]
CLUSTERROLE = ROOT / "deploy" / "rbac" / "clusterrole.yaml"
IAM_POLICY = ROOT / "deploy" / "iam-policy.json"


@dataclass(frozen=True)
class Req:
    verb: str
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""


def rule(namespace: str = "", **fields: Any) -> Rule:
    """A rule as YAML writes it; ``namespace`` makes it a Role's."""
    return Rule.from_dict(fields, namespace)


@pytest.mark.parametrize(("rule_dict", "request_", "allowed"), [
    pytest.param({"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}, Req("list", "", "pods"), True,
                 id="exact"),
    pytest.param({"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}, Req("get", "", "pods", name="p"),
                 False, id="other-verb"),
    pytest.param({"apiGroups": ["apps"], "resources": ["pods"], "verbs": ["list"]}, Req("list", "", "pods"), False,
                 id="other-group"),
    pytest.param({"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]},
                 Req("create", "", "pods", "eviction", "default", "p"), False, id="subresource-not-implied"),
    pytest.param({"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]},
                 Req("create", "", "pods", "eviction", "default", "p"), True, id="subresource-named"),
    pytest.param({"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]},
                 Req("create", "", "pods", namespace="default"), False, id="subresource-is-not-the-resource"),
    pytest.param({"apiGroups": ["apps"], "resources": ["*/scale"], "verbs": ["patch"]},
                 Req("patch", "apps", "deployments", "scale", "default", "web"), True, id="any-resource-scale"),
    pytest.param({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                 Req("delete", "apps", "daemonsets", namespace="kube-system", name="aws-node"), True, id="wildcards"),
    pytest.param({"apiGroups": [""], "resources": ["services/proxy"], "verbs": ["get"],
                  "resourceNames": ["goldpinger:8080"]},
                 Req("get", "", "services", "proxy", "default", "goldpinger:8080"), True, id="resource-name"),
    pytest.param({"apiGroups": [""], "resources": ["services/proxy"], "verbs": ["get"],
                  "resourceNames": ["goldpinger:8080"]},
                 Req("get", "", "services", "proxy", "default", "kubernetes:443"), False, id="other-name"),
    pytest.param({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"], "resourceNames": ["a"]},
                 Req("list", "", "configmaps", namespace="default"), False, id="resource-names-never-match-lists"),
    pytest.param({"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"], "namespace": "kube-system"},
                 Req("list", "", "secrets", namespace="kube-system"), True, id="role-in-its-namespace"),
    pytest.param({"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"], "namespace": "kube-system"},
                 Req("list", "", "secrets", namespace="default"), False, id="role-elsewhere"),
    pytest.param({"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"], "namespace": "kube-system"},
                 Req("list", "", "secrets"), False, id="role-not-cluster-wide"),
    pytest.param({"nonResourceURLs": ["/metrics"], "verbs": ["get"]}, Req("get", path="/metrics"), True,
                 id="non-resource-url"),
    pytest.param({"nonResourceURLs": ["/logs/*"], "verbs": ["get"]}, Req("get", path="/logs/kubelet.log"), True,
                 id="non-resource-prefix"),
    pytest.param({"nonResourceURLs": ["/metrics"], "verbs": ["get"]}, Req("get", "", "metrics"), False,
                 id="non-resource-rule-on-a-resource"),
])
def test_rule_matching(rule_dict: dict[str, Any], request_: Req, allowed: bool) -> None:
    assert rule(**rule_dict).matches(request_) is allowed


@pytest.mark.parametrize(("request_", "allowed"), [
    pytest.param(Req("get", path="/apis"), True, id="discovery"),
    pytest.param(Req("get", path="/api/v1"), True, id="group-discovery"),
    pytest.param(Req("get", path="/version"), True, id="version"),
    pytest.param(Req("post", path="/apis"), False, id="not-writable"),
    pytest.param(Req("get", path="/metrics"), False, id="not-public"),
])
def test_what_every_authenticated_user_may_do(request_: Req, allowed: bool) -> None:
    assert Policy(()).allows(request_) is allowed
    assert any(r.matches(request_) for r in AUTHENTICATED_DEFAULTS) is allowed


@pytest.mark.parametrize(("request_", "message"), [
    pytest.param(Req("delete", "", "nodes", name="n1"),
                 'nodes "n1" is forbidden: User "u" cannot delete resource "nodes" in API group "" at the '
                 'cluster scope', id="named-cluster-scoped"),
    pytest.param(Req("list", "apps", "daemonsets", namespace="kube-system"),
                 'daemonsets.apps is forbidden: User "u" cannot list resource "daemonsets" in API group "apps" '
                 'in the namespace "kube-system"', id="list-namespaced"),
    pytest.param(Req("create", "", "pods", "eviction", "default", "web-1"),
                 'pods "web-1" is forbidden: User "u" cannot create resource "pods/eviction" in API group "" '
                 'in the namespace "default"', id="subresource"),
    pytest.param(Req("get", path="/metrics"), 'forbidden: User "u" cannot get path "/metrics"', id="path"),
])
def test_forbidden_message(request_: Req, message: str) -> None:
    assert forbidden_message(request_, "u") == message


def test_covers_is_the_escalation_check() -> None:
    mine = Policy((rule(apiGroups=[""], resources=["pods", "nodes"], verbs=["get", "list"]),))
    assert covers(mine, [rule(apiGroups=[""], resources=["pods"], verbs=["list"])])
    assert not covers(mine, [rule(apiGroups=[""], resources=["pods"], verbs=["delete"])])
    assert not covers(mine, [rule(apiGroups=[""], resources=["pods"], verbs=["*"])])
    assert not covers(mine, [rule(apiGroups=["cilium.io"], resources=["ciliumnodes"], verbs=["get"])])


def test_a_policy_binds_exactly_one_subject() -> None:
    role = {"kind": "ClusterRole", "metadata": {"name": "r"}, "rules": []}

    def binding(user: str) -> dict[str, Any]:
        return {"kind": "ClusterRoleBinding", "metadata": {"name": user},
                "roleRef": {"kind": "ClusterRole", "name": "r"}, "subjects": [{"kind": "User", "name": user}]}

    assert policy_from([role, binding("a")]).username == "a"
    with pytest.raises(ValueError, match="one subject"):
        policy_from([role, binding("a"), binding("b")])
    with pytest.raises(ValueError, match="does not define"):
        policy_from([binding("a")])
    sa = dict(binding("x"), subjects=[{"kind": "ServiceAccount", "name": "mig", "namespace": "airflow"}])
    assert policy_from([role, sa]).username == "system:serviceaccount:airflow:mig"


# ---- enforcement in the twin, over HTTP with the official client ------------------------------------------

SMALL_POLICY = """
kind: ClusterRole
apiVersion: rbac.authorization.k8s.io/v1
metadata: {name: reader}
rules:
  - {apiGroups: [""], resources: [nodes, pods], verbs: [list]}
---
kind: Role
apiVersion: rbac.authorization.k8s.io/v1
metadata: {name: secrets, namespace: kube-system}
rules:
  - {apiGroups: [""], resources: [secrets], verbs: [list]}
---
kind: ClusterRoleBinding
apiVersion: rbac.authorization.k8s.io/v1
metadata: {name: reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: reader}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: migrator}]
---
kind: RoleBinding
apiVersion: rbac.authorization.k8s.io/v1
metadata: {name: secrets, namespace: kube-system}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: secrets}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: migrator}]
"""


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from twin.cluster import Twin
    from twin.config import FAST
    from twin.scenario import load_scenario

    path = tmp_path_factory.mktemp("rbac") / "policy.yaml"
    path.write_text(SMALL_POLICY)
    with Twin(load_scenario("default"), timing=FAST, rbac=path) as t:
        yield t


def core(twin: Any, token: str) -> kubernetes.client.CoreV1Api:
    api = twin.kube_client()
    bearer = f"Bearer {token}"
    api.configuration.api_key = {"BearerToken": bearer, "authorization": bearer}
    return kubernetes.client.CoreV1Api(api)


def test_allowed_requests_are_served(twin: Any) -> None:
    api = core(twin, twin.rbac_token)
    assert len(api.list_node().items) == 3
    assert api.list_namespaced_secret("kube-system").items is not None
    assert [r.user for r in twin.api.request_log[-2:]] == ["migrator", "migrator"]


@pytest.mark.parametrize(("call", "message"), [
    pytest.param(lambda api: api.delete_node("x"),
                 'nodes "x" is forbidden: User "migrator" cannot delete resource "nodes" in API group "" at the '
                 'cluster scope', id="delete-node"),
    pytest.param(lambda api: api.list_namespaced_secret("default"),
                 'secrets is forbidden: User "migrator" cannot list resource "secrets" in API group "" in the '
                 'namespace "default"', id="secrets-outside-the-role"),
    pytest.param(lambda api: api.create_namespaced_pod_eviction(
        "p", "default", {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p"}}),
                 'pods "p" is forbidden: User "migrator" cannot create resource "pods/eviction" in API group "" '
                 'in the namespace "default"', id="eviction"),
])
def test_denied_requests_get_403_with_the_api_servers_status(twin: Any, call: Any, message: str) -> None:
    with pytest.raises(ApiException) as err:
        call(core(twin, twin.rbac_token))
    assert err.value.status == 403
    status = json.loads(err.value.body)
    assert (status["kind"], status["reason"], status["code"], status["message"]) == (
        "Status", "Forbidden", 403, message)
    assert twin.api.request_log[-1].code == 403


def test_the_admin_token_is_not_restricted(twin: Any) -> None:
    api = core(twin, twin.token)
    assert api.list_namespaced_secret("default").items is not None
    assert twin.api.request_log[-1].user == "kubernetes-admin"


@pytest.mark.parametrize(("token_of", "path", "code"), [
    pytest.param("rbac", "/_twin/requests", 403, id="admin-routes-are-not-the-rbac-users"),
    pytest.param("rbac", "/apis", 200, id="discovery-is-everyones"),
    pytest.param("none", "/api/v1/nodes", 401, id="unknown-token"),
])
def test_raw_requests(twin: Any, token_of: str, path: str, code: int) -> None:
    token = twin.rbac_token if token_of == "rbac" else "not-a-token"
    resp = requests.get(twin.kube_url + path, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert resp.status_code == code


# ---- the shipped policies ----------------------------------------------------------------------------------


def test_the_clusterrole_file_binds_the_migration_user_without_wildcards() -> None:
    policy = load_policy(CLUSTERROLE)
    assert [(s.kind, s.name) for s in policy.subjects] == [("User", "cilium-migration")]
    for p in policy.permissions():
        assert "*" not in (p.verb, p.api_group, p.resource, p.resource_name, p.non_resource_url), p
    assert {p.namespace for p in policy.permissions() if p.resource == "secrets"} == {"kube-system"}
    kinds = [(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(CLUSTERROLE.read_text()) if d]
    assert sorted(kinds) == [("ClusterRole", "cilium-migration"), ("ClusterRole", "cilium-migration-in-place"),
                             ("ClusterRoleBinding", "cilium-migration"),
                             ("ClusterRoleBinding", "cilium-migration-in-place"),
                             ("Role", "cilium-migration-helm-release"), ("RoleBinding", "cilium-migration-helm-release")]


def test_the_in_place_role_only_reads_and_restarts() -> None:
    """What only the in-place DAG needs: read CiliumEndpoints and budgets, restart StatefulSets."""
    docs = [d for d in yaml.safe_load_all(CLUSTERROLE.read_text()) if d]
    [role] = [d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "cilium-migration-in-place"]
    verbs = {(g, r): set(rule["verbs"]) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert verbs == {("cilium.io", "ciliumendpoints"): {"list", "watch"}, ("policy", "poddisruptionbudgets"): {"list"},
                     ("apps", "statefulsets"): {"get", "list", "watch", "patch"}}


def test_the_iam_policy_names_its_actions_and_resources() -> None:
    policy = json.loads(IAM_POLICY.read_text())
    assert policy["Version"] == "2012-10-17"
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        assert all("*" not in a for a in actions), actions
        service = {a.split(":")[0] for a in actions}
        assert service in ({"eks"}, {"iam"}, {"ec2"}), actions
        if service == {"ec2"}:  # the in-place roll: only the cluster's own instances (their EKS tag)
            assert actions == ["ec2:TerminateInstances"], actions
            assert statement["Condition"] == {"StringEquals": {"aws:ResourceTag/eks:cluster-name": "${CLUSTER_NAME}"}}
        elif service == {"eks"}:
            assert all(r.startswith("arn:aws:eks:${AWS_REGION}:${AWS_ACCOUNT_ID}:") and "${CLUSTER_NAME}" in r
                       for r in resources), resources
        else:
            assert all(r.startswith(("arn:aws:iam::${AWS_ACCOUNT_ID}:", "arn:aws:iam::aws:policy/"))
                       for r in resources), resources
            assert all(a.split(":")[1].startswith(("Get", "List")) for a in actions), "IAM: reads only"
