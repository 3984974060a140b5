"""The in-place strategy's building blocks on plain objects: which pods are still on the old CNI, the
restart plan's order and exclusions, what a finished rollout is, and which budgets hold a restart back."""

from __future__ import annotations

from typing import Any

import pytest

from cilium_migration import old_cni, restarts
from cilium_migration.readiness import RESTARTED_AT

Obj = dict[str, Any]


def workload(kind: str, name: str, namespace: str = "default", *, labels: dict | None = None,
             host_network: bool = False, restarted_at: str | None = None) -> Obj:
    template: Obj = {"metadata": {"labels": labels or {"app": name}}, "spec": {"hostNetwork": host_network}}
    if restarted_at:
        template["metadata"]["annotations"] = {RESTARTED_AT: restarted_at}
    return {"kind": kind, "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
            "spec": {"template": template}}


def pod(name: str, namespace: str = "default", *, owner: tuple[str, str] | None = None, ip: str = "10.0.0.1",
        phase: str = "Running", node: str | None = "n1", host_network: bool = False, uid: str = "",
        labels: dict | None = None) -> Obj:
    meta: Obj = {"name": name, "namespace": namespace, "uid": uid or f"uid-{name}", "labels": dict(labels or {})}
    if owner is not None:
        kind, owner_name = owner
        if kind == "Deployment":  # through its ReplicaSet <deployment>-<hash>
            kind, owner_name = "ReplicaSet", f"{owner_name}-abc12"
            meta["labels"]["pod-template-hash"] = "abc12"
        meta["ownerReferences"] = [{"kind": kind, "name": owner_name, "uid": "o", "controller": True}]
    spec: Obj = {"hostNetwork": host_network}
    if node:
        spec["nodeName"] = node
    return {"metadata": meta, "spec": spec, "status": {"phase": phase, "podIP": ip, "podIPs": [{"ip": ip}]}}


def endpoint(p: Obj, *, ip: str | None = None, uid: str | None = None) -> Obj:
    meta = p["metadata"]
    cep: Obj = {"metadata": {"name": meta["name"], "namespace": meta["namespace"],
                             "ownerReferences": [{"kind": "Pod", "name": meta["name"], "uid": uid or meta["uid"]}]},
                "status": {"networking": {"addressing": [{"ipv4": ip or p["status"]["podIP"]}]}}}
    return cep


def names(pods: list[Obj]) -> list[str]:
    return [f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in pods]


# ---- pods on the old CNI -------------------------------------------------------------------------

def test_a_pod_with_its_own_endpoint_is_on_cilium_and_one_without_is_not() -> None:
    wired, old = pod("wired", ip="10.0.0.2"), pod("old", ip="10.0.0.3")
    assert names(old_cni.old_cni_pods([wired, old], [endpoint(wired)])) == ["default/old"]


def test_an_endpoint_counts_only_in_the_pods_own_namespace() -> None:
    p = pod("web")
    other_namespace = {**endpoint(p), "metadata": {**endpoint(p)["metadata"], "namespace": "prod"}}
    assert names(old_cni.old_cni_pods([p], [other_namespace])) == ["default/web"]


@pytest.mark.parametrize(("cep_ip", "cep_uid", "on_old"), [
    pytest.param("10.0.0.9", None, True, id="address-of-another-pod"),
    pytest.param(None, "uid-of-the-previous-pod", True, id="owned-by-the-previous-pod-of-that-name"),
    pytest.param(None, None, False, id="its-own"),
])
def test_a_stale_endpoint_of_the_same_name_does_not_count(cep_ip: str | None, cep_uid: str | None,
                                                          on_old: bool) -> None:
    p = pod("db-0", ip="10.0.0.5")
    assert bool(old_cni.old_cni_pods([p], [endpoint(p, ip=cep_ip, uid=cep_uid)])) is on_old


def test_an_endpoint_without_an_address_or_owner_still_counts() -> None:
    p = pod("web")
    bare_cep = {"metadata": {"name": "web", "namespace": "default"}, "status": {}}
    assert old_cni.old_cni_pods([p], [bare_cep]) == []


@pytest.mark.parametrize(("p", "reported"), [
    pytest.param(pod("running"), True, id="running"),
    pytest.param(pod("wiring", phase="Pending"), True, id="pending-on-a-node"),
    pytest.param(pod("unscheduled", phase="Pending", node=None), False, id="pending-unscheduled"),
    pytest.param(pod("done", phase="Succeeded"), False, id="finished"),
    pytest.param(pod("agent", host_network=True), False, id="host-network"),
])
def test_only_pods_that_need_a_cni_are_reported(p: Obj, reported: bool) -> None:
    assert bool(old_cni.old_cni_pods([p], [])) is reported


def test_the_summary_names_namespace_node_and_owner_and_is_capped() -> None:
    pods = [pod(f"p{i}", owner=("Deployment", "web")) for i in range(12)] + [pod("lone")]
    text = old_cni.summary(old_cni.old_cni_pods(pods, []), limit=3)
    assert text.startswith("13 pod(s) on the old CNI: default/lone on n1 (bare), default/p0 on n1 (Deployment)")
    assert text.endswith("(+10 more)")
    assert old_cni.summary([]) == "no pod on the old CNI"


# ---- the plan --------------------------------------------------------------------------------------

def plan(pods: list[Obj], objects: list[Obj], order: tuple[str, ...] = restarts.DEFAULT_NAMESPACE_ORDER,
         endpoints: list[Obj] | None = None, onto: str = "cilium") -> restarts.Plan:
    by_kind: dict[str, list[Obj]] = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj)
    return restarts.plan_restarts(pods, endpoints or [], by_kind, order, onto=onto)


def targets(p: restarts.Plan) -> list[str]:
    return [w.target for w in p.workloads]


def test_kube_system_comes_first_then_namespaces_alphabetically_and_daemonsets_deployments_statefulsets() -> None:
    objects = [workload("StatefulSet", "db", "apps"), workload("Deployment", "web", "apps"),
               workload("DaemonSet", "agent", "apps"), workload("Deployment", "api", "apps"),
               workload("Deployment", "coredns", "kube-system"), workload("Deployment", "shop", "zoo"),
               workload("Deployment", "front", "default")]
    pods = [pod(f"{o['metadata']['name']}-x", o["metadata"]["namespace"],
                owner=(o["kind"], o["metadata"]["name"])) for o in objects]
    assert targets(plan(pods, objects)) == [
        "Deployment kube-system/coredns",
        "DaemonSet apps/agent", "Deployment apps/api", "Deployment apps/web", "StatefulSet apps/db",
        "Deployment default/front", "Deployment zoo/shop"]


def test_the_named_namespaces_come_first_in_the_order_given() -> None:
    objects = [workload("Deployment", "a", ns) for ns in ("kube-system", "monitoring", "default", "b")]
    pods = [pod("a-x", o["metadata"]["namespace"], owner=("Deployment", "a")) for o in objects]
    assert [w.namespace for w in plan(pods, objects, ("monitoring", "kube-system")).workloads] == [
        "monitoring", "kube-system", "b", "default"]


def test_a_workload_whose_pods_are_all_on_cilium_is_not_planned() -> None:
    objects = [workload("Deployment", "done"), workload("Deployment", "half")]
    done, half_new, half_old = (pod("done-1", owner=("Deployment", "done"), ip="10.0.0.1"),
                                pod("half-1", owner=("Deployment", "half"), ip="10.0.0.2"),
                                pod("half-2", owner=("Deployment", "half"), ip="10.0.0.3"))
    p = plan([done, half_new, half_old], objects, endpoints=[endpoint(done), endpoint(half_new)])
    assert targets(p) == ["Deployment default/half"]
    assert p.workloads[0].old_cni_pods == ("half-2",)


@pytest.mark.parametrize("obj", [
    pytest.param(workload("DaemonSet", "aws-node", "kube-system", labels={"k8s-app": "aws-node"}), id="aws-node"),
    pytest.param(workload("DaemonSet", "cilium", "kube-system", labels={"k8s-app": "cilium"}), id="cilium-agent"),
    pytest.param(workload("DaemonSet", "cilium-envoy", "cilium", labels={"k8s-app": "cilium-envoy"}),
                 id="cilium-envoy-in-its-own-namespace"),
    pytest.param(workload("Deployment", "cilium-operator", "kube-system", labels={"io.cilium/app": "operator"},
                          host_network=True), id="cilium-operator"),
    pytest.param(workload("DaemonSet", "node-exporter", "monitoring", host_network=True), id="host-network"),
])
def test_cni_agents_and_host_network_workloads_are_never_planned(obj: Obj) -> None:
    p = pod("x-1", obj["metadata"]["namespace"], owner=(obj["kind"], obj["metadata"]["name"]))
    result = plan([p], [obj, workload("Deployment", "web")])
    assert targets(result) == []
    assert names(result.other_pods) == [f"{obj['metadata']['namespace']}/x-1"], "shown, for a human"
    assert restarts.excluded(obj) is not None


def test_hubble_relay_wired_by_aws_cni_during_the_install_is_restarted_like_any_workload() -> None:
    relay = workload("Deployment", "hubble-relay", "kube-system",
                     labels={"k8s-app": "hubble-relay", "app.kubernetes.io/part-of": "cilium"})
    on_old, on_cilium = (pod("hubble-relay-1", "kube-system", owner=("Deployment", "hubble-relay"), ip="10.0.0.7"),
                         pod("hubble-relay-2", "kube-system", owner=("Deployment", "hubble-relay"), ip="10.0.0.8"))
    assert targets(plan([on_old], [relay])) == ["Deployment kube-system/hubble-relay"]
    assert targets(plan([on_cilium], [relay], endpoints=[endpoint(on_cilium)])) == [], "already Cilium's"


def test_bare_pods_and_other_controllers_pods_are_returned_apart_never_planned() -> None:
    objects = [workload("Deployment", "web")]
    pods = [pod("web-1", owner=("Deployment", "web")), pod("debug"), pod("migrate-1", owner=("Job", "migrate")),
            pod("orphan-1", owner=("Deployment", "gone"))]
    p = plan(pods, objects)
    assert targets(p) == ["Deployment default/web"]
    assert names(p.bare_pods) == ["default/debug"]
    assert names(p.other_pods) == ["default/migrate-1", "default/orphan-1"]


def test_a_workload_survives_the_trip_through_an_xcom() -> None:
    obj = workload("StatefulSet", "db")
    p = plan([pod("db-0", owner=("StatefulSet", "db"), labels={"app": "db"})], [obj])
    w = p.workloads[0]
    assert restarts.Workload.from_dict(w.to_dict()) == w
    assert w.template_labels == {"app": "db"} and w.old_cni_pods == ("db-0",)


def test_restarted_at_is_read_from_the_pod_template() -> None:
    assert restarts.restarted_at_of(workload("Deployment", "web", restarted_at="2026-12-03T19:00:00Z")) == \
        "2026-12-03T19:00:00Z"
    assert restarts.restarted_at_of(workload("Deployment", "web")) is None


# ---- rollout status ----------------------------------------------------------------------------------

def deployment(replicas: int = 3, *, generation: int = 2, observed: int = 2, updated: int = 3, total: int = 3,
               available: int = 3, deadline: bool = False) -> Obj:
    conditions = [{"type": "Progressing", "reason": "ProgressDeadlineExceeded" if deadline else "ReplicaSetUpdated"}]
    return {"kind": "Deployment", "metadata": {"name": "web", "generation": generation},
            "spec": {"replicas": replicas},
            "status": {"observedGeneration": observed, "updatedReplicas": updated, "replicas": total,
                       "availableReplicas": available, "conditions": conditions}}


@pytest.mark.parametrize(("obj", "done", "says"), [
    pytest.param(deployment(), True, "successfully rolled out", id="done"),
    pytest.param(deployment(observed=1), False, "spec update to be observed", id="not-observed"),
    pytest.param(deployment(updated=1, total=4), False, "1 out of 3 new replicas", id="updating"),
    pytest.param(deployment(total=4), False, "1 old replicas are pending termination", id="old-replicas"),
    pytest.param(deployment(available=2), False, "2 of 3 updated replicas are available", id="unavailable"),
    pytest.param(deployment(deadline=True), False, "exceeded its progress deadline", id="deadline"),
])
def test_a_deployment_is_done_as_kubectl_rollout_status_says(obj: Obj, done: bool, says: str) -> None:
    ok, message = restarts.rollout_done(obj)
    assert ok is done and says in message


def statefulset(*, ready: int = 2, updated: int = 2, current: str = "db-2", update: str = "db-2",
                strategy: str = "RollingUpdate") -> Obj:
    return {"metadata": {"name": "db", "generation": 3},
            "spec": {"replicas": 2, "updateStrategy": {"type": strategy}},
            "status": {"observedGeneration": 3, "readyReplicas": ready, "updatedReplicas": updated,
                       "currentRevision": current, "updateRevision": update}}


@pytest.mark.parametrize(("obj", "done", "says"), [
    pytest.param(statefulset(), True, "rolling update complete 2 pods at revision db-2", id="done"),
    pytest.param(statefulset(ready=1), False, "Waiting for 1 pods to be ready", id="not-ready"),
    pytest.param(statefulset(current="db-1", updated=1), False, "1 pods at revision db-2", id="updating"),
    pytest.param(statefulset(strategy="OnDelete"), False, "only available for RollingUpdate", id="on-delete"),
])
def test_a_statefulset_is_done_when_every_pod_is_ready_on_the_update_revision(obj: Obj, done: bool,
                                                                              says: str) -> None:
    ok, message = restarts.rollout_done(obj, "StatefulSet")
    assert ok is done and says in message


@pytest.mark.parametrize(("status", "done", "says"), [
    pytest.param({"desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 3}, True,
                 "successfully rolled out", id="done"),
    pytest.param({"desiredNumberScheduled": 3, "updatedNumberScheduled": 2, "numberAvailable": 3}, False,
                 "2 out of 3 new pods have been updated", id="updating"),
    pytest.param({"desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 1}, False,
                 "1 of 3 updated pods are available", id="unavailable"),
])
def test_a_daemonset_is_done_when_every_scheduled_pod_is_updated_and_available(status: Obj, done: bool,
                                                                               says: str) -> None:
    obj = {"kind": "DaemonSet", "metadata": {"name": "agent", "generation": 1},
           "status": {"observedGeneration": 1, **status}}
    ok, message = restarts.rollout_done(obj)
    assert ok is done and says in message


# ---- disruption budgets ------------------------------------------------------------------------------

def pdb(name: str, selector: Obj | None, allowed: int | None, namespace: str = "default") -> Obj:
    status = {} if allowed is None else {"disruptionsAllowed": allowed, "currentHealthy": 3, "desiredHealthy": 3}
    return {"metadata": {"name": name, "namespace": namespace}, "spec": {"selector": selector}, "status": status}


WEB = restarts.Workload("Deployment", "default", "web", {"app": "web", "tier": "front"},
                        ({"app": "web", "tier": "front", "pod-template-hash": "abc12"},), ("web-abc12-x",))


@pytest.mark.parametrize(("budget", "blocked"), [
    pytest.param(pdb("web", {"matchLabels": {"app": "web"}}, 0), True, id="selected-none-allowed"),
    pytest.param(pdb("web", {"matchLabels": {"app": "web"}}, 1), False, id="selected-one-allowed"),
    pytest.param(pdb("web", {"matchLabels": {"app": "web"}}, None), True, id="status-not-computed-yet"),
    pytest.param(pdb("db", {"matchLabels": {"app": "db"}}, 0), False, id="other-pods"),
    pytest.param(pdb("web", {"matchLabels": {"app": "web"}}, 0, "prod"), False, id="other-namespace"),
    pytest.param(pdb("all", {}, 0), True, id="empty-selector-selects-all"),
    pytest.param(pdb("none", None, 0), False, id="null-selector-selects-none"),
    pytest.param(pdb("expr", {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]}, 0),
                 True, id="in"),
    pytest.param(pdb("expr", {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["front"]}]},
                     0), False, id="not-in"),
    pytest.param(pdb("expr", {"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}, 0), True,
                 id="does-not-exist"),
    pytest.param(pdb("hash", {"matchLabels": {"pod-template-hash": "abc12"}}, 0), True,
                 id="a-label-only-the-pods-carry"),
])
def test_a_restart_waits_for_a_budget_that_selects_its_pods_and_allows_no_disruption(budget: Obj,
                                                                                     blocked: bool) -> None:
    reason = restarts.budget_blocks([budget], WEB)
    assert (reason is not None) is blocked
    if blocked:
        assert f"PodDisruptionBudget default/{budget['metadata']['name']}" in (reason or "")
        assert "Deployment default/web" in (reason or "")


# ---- the rollback: back onto aws-cni -------------------------------------------------------------------

def test_onto_aws_cni_the_plan_is_the_workloads_with_pods_on_cilium_without_ciliums_own() -> None:
    objects = [workload("Deployment", "web"), workload("Deployment", "api"),
               workload("Deployment", "hubble-relay", "kube-system", labels={"k8s-app": "hubble-relay"})]
    web, api, relay = (pod("web-1", owner=("Deployment", "web"), ip="10.0.0.1"),
                       pod("api-1", owner=("Deployment", "api"), ip="10.0.0.2"),
                       pod("hubble-relay-1", "kube-system", owner=("Deployment", "hubble-relay"), ip="10.0.0.3"))
    back = plan([web, api, relay], objects, endpoints=[endpoint(web), endpoint(relay)], onto="aws-cni")
    assert targets(back) == ["Deployment default/web"], "api is on aws-cni already; relay goes with Cilium"
    assert names(back.other_pods) == ["kube-system/hubble-relay-1"]
    assert names(old_cni.cilium_pods([web, api, relay], [endpoint(web), endpoint(relay)])) == [
        "default/web-1", "kube-system/hubble-relay-1"]
