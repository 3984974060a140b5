"""RBAC escalation prevention: a restricted user cannot grant what it does not hold.

Specification (as kube-apiserver's RBAC storage), through the official client with the twin's RBAC token:
- A Role or ClusterRole whose rules its creator holds is created; one that grants more is refused with 403
  and the API server's message naming the missing permissions, unless the creator holds ``escalate`` on
  roles / clusterroles. ``escalate`` restricted by name allows updating that role, never creating one.
- A ClusterRole's rules must be held cluster-wide; a Role's in its namespace, where cluster-wide rules
  count too. Updates are judged like creates: PUT on the object sent, PATCH on the object as patched; an
  update of only ownerReferences / finalizers grants nothing and is allowed.
- A RoleBinding or ClusterRoleBinding is created when its creator holds every permission of the bound role
  (read from the cluster; a RoleBinding's ClusterRole counts in the binding's namespace only), or ``bind``
  on that role (restricted by name or not). A binding to a role that does not exist is 404.
- Setting a ClusterRole's aggregationRule needs full authority.
- The admin is never refused, and ``bind`` / ``escalate`` never show as a request's verb in the log.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import kubernetes
import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from twin.rbac import AUTHORIZATION_ONLY_VERBS, policy_from

RBAC = "rbac.authorization.k8s.io/v1"
RBAC_WRITES = {"apiGroups": ["rbac.authorization.k8s.io"],
               "resources": ["roles", "clusterroles", "rolebindings", "clusterrolebindings"],
               "verbs": ["get", "create", "update", "patch", "delete"]}


def policy_yaml(user: str, cluster_rules: list[dict[str, Any]],
                kube_system_rules: list[dict[str, Any]] | None = None) -> str:
    """A ClusterRole (and optionally a kube-system Role) bound to ``user``."""
    subject = [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]
    docs: list[dict[str, Any]] = [
        {"apiVersion": RBAC, "kind": "ClusterRole", "metadata": {"name": user}, "rules": cluster_rules},
        {"apiVersion": RBAC, "kind": "ClusterRoleBinding", "metadata": {"name": user},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": user},
         "subjects": subject}]
    if kube_system_rules:
        meta = {"name": user, "namespace": "kube-system"}
        docs += [{"apiVersion": RBAC, "kind": "Role", "metadata": meta, "rules": kube_system_rules},
                 {"apiVersion": RBAC, "kind": "RoleBinding", "metadata": meta,
                  "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": user},
                  "subjects": subject}]
    return yaml.safe_dump_all(docs)


# The twin's RBAC identity: writes RBAC objects, reads pods everywhere and configmaps in kube-system, may
# escalate only the ClusterRole "widen-me" and bind only the ClusterRole "pod-deleter".
DELEGATE = policy_yaml("delegate", [
    RBAC_WRITES,
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
    {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "resourceNames": ["widen-me"],
     "verbs": ["escalate"]},
    {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "resourceNames": ["pod-deleter"],
     "verbs": ["bind"]},
], kube_system_rules=[{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}])
# Another identity registered on the same twin: escalate on both role kinds, bind on any Role.
ESCALATOR = policy_yaml("escalator", [
    RBAC_WRITES,
    {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "clusterroles"], "verbs": ["escalate"]},
    {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["bind"]},
])

PODS_GET = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}
PODS_DELETE = {"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]}
CONFIGMAPS_GET = {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}


def not_held(user: str, *lines: str) -> str:
    return (f'user "{user}" (groups=["system:authenticated"]) is attempting to grant RBAC permissions not '
            "currently held:\n" + "\n".join(lines))


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from twin.cluster import Twin
    from twin.config import FAST
    from twin.scenario import load_scenario

    path = tmp_path_factory.mktemp("escalation") / "delegate.yaml"
    path.write_text(DELEGATE)
    with Twin(load_scenario("default"), timing=FAST, rbac=path) as t:
        yield t


def rbac_api(twin: Any, token: str) -> kubernetes.client.RbacAuthorizationV1Api:
    client = twin.kube_client()
    bearer = f"Bearer {token}"
    client.configuration.api_key = {"BearerToken": bearer, "authorization": bearer}
    return kubernetes.client.RbacAuthorizationV1Api(client)


@pytest.fixture(scope="module")
def delegate(twin: Any) -> kubernetes.client.RbacAuthorizationV1Api:
    return rbac_api(twin, twin.rbac_token)


@pytest.fixture(scope="module")
def escalator(twin: Any) -> kubernetes.client.RbacAuthorizationV1Api:
    policy = policy_from(d for d in yaml.safe_load_all(ESCALATOR) if d)
    token = secrets.token_urlsafe(16)
    twin.api.add_user(token, policy.username, policy.allows, policy.rules)
    return rbac_api(twin, token)


@pytest.fixture(scope="module")
def admin(twin: Any) -> kubernetes.client.RbacAuthorizationV1Api:
    return rbac_api(twin, twin.token)


@pytest.fixture
def name() -> str:
    """A fresh object name per test."""
    return f"t{secrets.token_hex(3)}"


def role(name: str, *rules: dict[str, Any], namespace: str = "default") -> dict[str, Any]:
    return {"apiVersion": RBAC, "kind": "Role", "metadata": {"name": name, "namespace": namespace},
            "rules": list(rules)}


def cluster_role(name: str, *rules: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"apiVersion": RBAC, "kind": "ClusterRole", "metadata": {"name": name}, "rules": list(rules), **extra}


def binding(name: str, kind: str, role_name: str, *, namespace: str | None = "default") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name} if namespace is None else {"name": name, "namespace": namespace}
    return {"apiVersion": RBAC, "kind": "ClusterRoleBinding" if namespace is None else "RoleBinding",
            "metadata": meta, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role_name},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "someone"}]}


def refused(call: Callable[[], Any], code: int = 403) -> dict[str, Any]:
    """The Status body of a call that must fail with ``code``."""
    with pytest.raises(ApiException) as err:
        call()
    assert err.value.status == code, err.value.body
    status: dict[str, Any] = json.loads(err.value.body)
    assert (status["kind"], status["code"]) == ("Status", code)
    return status


# ---- roles -----------------------------------------------------------------------------------------------

def test_a_role_granting_only_what_its_creator_holds_is_created(delegate: Any, name: str) -> None:
    created = delegate.create_namespaced_role("default", role(name, PODS_GET))
    assert created.metadata.name == name


def test_a_role_granting_more_is_refused_with_the_api_servers_message(delegate: Any, name: str) -> None:
    status = refused(lambda: delegate.create_namespaced_role("default", role(name, PODS_GET, PODS_DELETE)))
    assert status["reason"] == "Forbidden"
    assert status["message"] == (f'roles.rbac.authorization.k8s.io "{name}" is forbidden: ' + not_held(
        "delegate", '{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}'))
    assert status["details"] == {"name": name, "group": "rbac.authorization.k8s.io", "kind": "roles"}


def test_the_message_lists_every_missing_permission_compactly(delegate: Any, name: str) -> None:
    rules = ({"apiGroups": [""], "resources": ["pods", "services"], "verbs": ["get", "delete", "create"]},
             {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["web"], "verbs": ["patch"]},
             {"nonResourceURLs": ["/metrics"], "verbs": ["get"]})
    status = refused(lambda: delegate.create_cluster_role(cluster_role(name, *rules)))
    assert status["message"] == f'clusterroles.rbac.authorization.k8s.io "{name}" is forbidden: ' + not_held(
        "delegate",
        '{APIGroups:[""], Resources:["pods"], Verbs:["delete" "create"]}',
        '{APIGroups:[""], Resources:["services"], Verbs:["get" "delete" "create"]}',
        '{APIGroups:["apps"], Resources:["deployments"], ResourceNames:["web"], Verbs:["patch"]}',
        '{NonResourceURLs:["/metrics"], Verbs:["get"]}')


def test_a_wildcard_is_covered_only_by_the_same_wildcard(delegate: Any, name: str) -> None:
    status = refused(lambda: delegate.create_namespaced_role("default", role(
        name, {"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]})))
    assert status["message"].endswith('{APIGroups:[""], Resources:["pods"], Verbs:["*"]}')


def test_a_role_may_grant_what_its_creator_holds_in_that_namespace(delegate: Any, name: str) -> None:
    delegate.create_namespaced_role("kube-system", role(name, CONFIGMAPS_GET, PODS_GET, namespace="kube-system"))
    refused(lambda: delegate.create_namespaced_role("default", role(name, CONFIGMAPS_GET)))


def test_a_clusterrole_needs_its_rules_held_cluster_wide(delegate: Any, name: str) -> None:
    delegate.create_cluster_role(cluster_role(name, PODS_GET))
    status = refused(lambda: delegate.create_cluster_role(cluster_role(name + "-cm", CONFIGMAPS_GET)))
    assert status["message"].endswith('{APIGroups:[""], Resources:["configmaps"], Verbs:["get"]}')


def test_what_every_authenticated_user_holds_counts(delegate: Any, name: str) -> None:
    delegate.create_cluster_role(cluster_role(name, {"nonResourceURLs": ["/version", "/apis/*"], "verbs": ["get"]}))


def test_escalate_lets_its_holder_create_any_role(escalator: Any, name: str) -> None:
    escalator.create_cluster_role(cluster_role(name, {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}))
    escalator.create_namespaced_role("default", role(name, PODS_DELETE))


def test_escalate_restricted_by_name_allows_updating_that_role_never_creating_it(
        delegate: Any, admin: Any) -> None:
    refused(lambda: delegate.create_cluster_role(cluster_role("widen-me", PODS_DELETE)))
    admin.create_cluster_role(cluster_role("widen-me", PODS_GET))
    delegate.patch_cluster_role("widen-me", {"rules": [PODS_GET, PODS_DELETE]})
    current = delegate.read_cluster_role("widen-me")
    current.rules.append(kubernetes.client.V1PolicyRule(api_groups=[""], resources=["secrets"], verbs=["list"]))
    delegate.replace_cluster_role("widen-me", current)
    assert [r.resources for r in admin.read_cluster_role("widen-me").rules] == [["pods"], ["pods"], ["secrets"]]


def test_an_update_is_judged_on_the_role_it_leaves(delegate: Any, admin: Any, name: str) -> None:
    delegate.create_namespaced_role("default", role(name, PODS_GET))
    status = refused(lambda: delegate.patch_namespaced_role(name, "default", {"rules": [PODS_GET, PODS_DELETE]}))
    assert status["message"].startswith(f'roles.rbac.authorization.k8s.io "{name}" is forbidden: user "delegate"')
    current = delegate.read_namespaced_role(name, "default")
    current.rules[0].verbs = ["get", "list", "watch"]
    status = refused(lambda: delegate.replace_namespaced_role(name, "default", current))
    assert status["message"].endswith('{APIGroups:[""], Resources:["pods"], Verbs:["watch"]}')
    delegate.patch_namespaced_role(name, "default", {"rules": [{**PODS_GET, "verbs": ["get", "list"]}]})


def test_any_other_change_to_a_role_granting_more_is_refused_but_garbage_collection_fields(
        delegate: Any, admin: Any, name: str) -> None:
    admin.create_namespaced_role("default", role(name, PODS_DELETE))
    refused(lambda: delegate.patch_namespaced_role(name, "default", {"metadata": {"labels": {"team": "a"}}}))
    delegate.patch_namespaced_role(name, "default", {"metadata": {"finalizers": ["example.com/keep"]}})
    delegate.patch_namespaced_role(name, "default", {"metadata": {"finalizers": None}})


def test_dry_runs_are_checked_too(delegate: Any, name: str) -> None:
    refused(lambda: delegate.create_namespaced_role("default", role(name, PODS_DELETE), dry_run="All"))


def test_an_aggregation_rule_needs_full_authority(delegate: Any, escalator: Any, name: str) -> None:
    aggregated = cluster_role(name, aggregationRule={"clusterRoleSelectors": [{"matchLabels": {"x": "y"}}]})
    status = refused(lambda: delegate.create_cluster_role(aggregated))
    assert status["message"] == (f'clusterroles.rbac.authorization.k8s.io "{name}" is forbidden: must have '
                                 "cluster-admin privileges to use the aggregationRule")
    escalator.create_cluster_role(aggregated)


# ---- bindings --------------------------------------------------------------------------------------------

def test_binding_a_role_whose_permissions_its_creator_holds(delegate: Any, admin: Any, name: str) -> None:
    admin.create_namespaced_role("default", role(name, PODS_GET))
    admin.create_cluster_role(cluster_role(name, {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}))
    delegate.create_namespaced_role_binding("default", binding(name, "Role", name))
    delegate.create_namespaced_role_binding("default", binding(name + "-c", "ClusterRole", name))
    delegate.create_cluster_role_binding(binding(name, "ClusterRole", name, namespace=None))


def test_binding_a_role_granting_more_is_refused(delegate: Any, admin: Any, name: str) -> None:
    admin.create_namespaced_role("default", role(name, PODS_GET, PODS_DELETE))
    status = refused(lambda: delegate.create_namespaced_role_binding("default", binding(name, "Role", name)))
    assert status["message"] == (f'rolebindings.rbac.authorization.k8s.io "{name}" is forbidden: ' + not_held(
        "delegate", '{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}'))
    assert status["details"] == {"name": name, "group": "rbac.authorization.k8s.io", "kind": "rolebindings"}
    admin.create_cluster_role(cluster_role(name, PODS_DELETE))
    status = refused(lambda: delegate.create_cluster_role_binding(binding(name, "ClusterRole", name, namespace=None)))
    assert status["message"].startswith(f'clusterrolebindings.rbac.authorization.k8s.io "{name}" is forbidden: ')


def test_a_rolebinding_grants_a_clusterroles_rules_in_its_namespace_only(
        delegate: Any, admin: Any, name: str) -> None:
    admin.create_cluster_role(cluster_role(name, CONFIGMAPS_GET))
    delegate.create_namespaced_role_binding("kube-system", binding(name, "ClusterRole", name, namespace="kube-system"))
    refused(lambda: delegate.create_namespaced_role_binding("default", binding(name, "ClusterRole", name)))
    refused(lambda: delegate.create_cluster_role_binding(binding(name, "ClusterRole", name, namespace=None)))


def test_bind_restricted_by_name_allows_binding_that_role_only(delegate: Any, admin: Any, name: str) -> None:
    admin.create_cluster_role(cluster_role("pod-deleter", PODS_DELETE))
    admin.create_cluster_role(cluster_role(name, PODS_DELETE))
    delegate.create_cluster_role_binding(binding(name, "ClusterRole", "pod-deleter", namespace=None))
    delegate.create_namespaced_role_binding("default", binding(name, "ClusterRole", "pod-deleter"))
    refused(lambda: delegate.create_cluster_role_binding(binding(name + "-x", "ClusterRole", name, namespace=None)))
    delegate.patch_cluster_role_binding(name, {"metadata": {"labels": {"team": "a"}}})


def test_bind_lets_its_holder_bind_any_role_of_that_kind(escalator: Any, admin: Any, name: str) -> None:
    admin.create_namespaced_role("default", role(name, {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}))
    escalator.create_namespaced_role_binding("default", binding(name, "Role", name))
    admin.create_cluster_role(cluster_role(name, {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}))
    refused(lambda: escalator.create_namespaced_role_binding("default", binding(name + "-c", "ClusterRole", name)))


def test_repointing_a_binding_is_judged_like_creating_it(delegate: Any, admin: Any, name: str) -> None:
    admin.create_namespaced_role("default", role(name, PODS_GET))
    admin.create_namespaced_role("default", role(name + "-more", PODS_DELETE))
    delegate.create_namespaced_role_binding("default", binding(name, "Role", name))
    current = delegate.read_namespaced_role_binding(name, "default")
    current.subjects.append(kubernetes.client.RbacV1Subject(kind="User", name="another",
                                                             api_group="rbac.authorization.k8s.io"))
    delegate.replace_namespaced_role_binding(name, "default", current)
    admin.patch_namespaced_role(name, "default", {"rules": [PODS_DELETE]})
    refused(lambda: delegate.patch_namespaced_role_binding(name, "default", {"metadata": {"labels": {"a": "b"}}}))


def test_binding_a_role_that_does_not_exist_is_not_found(delegate: Any, name: str) -> None:
    status = refused(lambda: delegate.create_namespaced_role_binding("default", binding(name, "Role", "nope")),
                     code=404)
    assert status["message"] == 'roles.rbac.authorization.k8s.io "nope" not found'


# ---- the admin, and the request log ----------------------------------------------------------------------

def test_the_admin_is_never_refused(admin: Any, name: str) -> None:
    admin.create_cluster_role(cluster_role(name, {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                                           {"nonResourceURLs": ["*"], "verbs": ["*"]}))
    admin.create_cluster_role_binding(binding(name, "ClusterRole", name, namespace=None))
    admin.create_namespaced_role_binding("default", binding(name, "Role", "does-not-exist-yet"))


def test_bind_and_escalate_are_never_a_requests_verb(twin: Any, delegate: Any, name: str) -> None:
    start = len(twin.api.request_log)
    delegate.create_cluster_role_binding(binding(name, "ClusterRole", "pod-deleter", namespace=None))
    refused(lambda: delegate.create_cluster_role(cluster_role("widen-me-not", PODS_DELETE)))
    records = twin.api.request_log[start:]
    assert [(r.verb, r.resource, r.code) for r in records] == [
        ("create", "clusterrolebindings", 201), ("create", "clusterroles", 403)]
    assert not {r.verb for r in twin.api.request_log} & AUTHORIZATION_ONLY_VERBS
