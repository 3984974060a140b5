"""The in-place strategy's building blocks against a running twin: Cilium installed with Helm beside the
AWS VPC CNI on the default scenario's aws-cni nodes (``cilium.in_place_values``: no fence,
``cni.exclusive`` off), then the pods still on the old CNI found and moved by rollout restarts.

One twin is shared by the module, so the tests run as one story: install, find the old pods, restart
them in the plan's order, retry (nothing twice), a budget that holds a restart back, and the requests a
listing makes. The twin's own record of which CNI wired a pod (``twin.cilium-migration.io/cni``) is read
here only as the ground truth the plugin code (which never reads it) is checked against.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client as k8s

from bench.requests_per_check import CountingClients
from cilium_migration import cilium, old_cni, restarts
from cilium_migration.clients import Clients, items
from cilium_migration.readiness import RESTARTED_AT, name_of
from cilium_migration.spec import resolve_chart
from twin.cluster import Twin
from twin.controllers.base import AWS_CNI, CILIUM, CNI_ANNOTATION
from twin.resources import BY_KEY

CHART = resolve_chart("twin:cilium")
RUN = "2026-12-03T19:00:00Z"  # this run's restartedAt
BARE = "debug"  # a pod without a controller, created before Cilium
STRICT_PDB = "web-no-disruption"



@pytest.fixture(scope="module")
def custom(clients: Clients) -> Any:
    return k8s.CustomObjectsApi(clients.api_client)


@pytest.fixture(scope="module")
def policy(clients: Clients) -> Any:
    return k8s.PolicyV1Api(clients.api_client)


@pytest.fixture(scope="module")
def story() -> dict[str, Any]:
    """What one test leaves for the next (the module's tests are one story, in order)."""
    return {}


def bare_pod(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default",
                                                            "labels": {"app": name}},
            "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]}}


def twin_pods(twin: Twin) -> list[dict[str, Any]]:
    return list(twin.store.iter_all(BY_KEY["pods"]))


def key(pod: dict[str, Any]) -> str:
    return f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"


def wired_by(twin: Twin, cni: str) -> set[str]:
    """Ground truth: the Running pods the twin's kubelets wired with ``cni``."""
    return {key(p) for p in twin_pods(twin) if (p.get("status") or {}).get("phase") == "Running"
            and (p["metadata"].get("annotations") or {}).get(CNI_ANNOTATION) == cni}


def pending(twin: Twin) -> list[str]:
    return [key(p) for p in twin_pods(twin) if (p.get("status") or {}).get("phase") != "Running"]


def reported(clients: Clients, custom: Any) -> set[str]:
    return {key(p) for p in old_cni.pods_on_old_cni(clients.core, custom)}


def wait_until(predicate: Callable[[], Any], what: str | Callable[[], str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what() if callable(what) else what}"
        time.sleep(0.1)


def wait_for_budget(policy: Any, workload: restarts.Workload) -> None:
    wait_until(lambda: restarts.blocked_by_budget(policy, workload) is None,
               lambda: restarts.blocked_by_budget(policy, workload) or "")


def wait_rolled_out(clients: Clients, workload: restarts.Workload, timeout: float = 60.0) -> str:
    """Poll ``rollout_done`` until the rollout is complete; its last message."""
    deadline = time.monotonic() + timeout
    while True:
        done, message = restarts.rollout_done(restarts.read(clients.apps, workload) or {}, workload.kind)
        if done:
            return message
        assert time.monotonic() < deadline, f"{workload.target} not rolled out: {message}"
        time.sleep(0.1)


def both_cni_configs(twin: Twin) -> bool:
    """Every node has Cilium's config first and aws-node's kept (``cni.exclusive`` off)."""
    configs = twin.cni_configs()
    nodes = {n["metadata"]["name"] for n in twin.store.iter_all(BY_KEY["nodes"])}
    return set(configs) == nodes and all(
        files[:1] == ["05-cilium.conflist"] and "10-aws.conflist" in files for files in configs.values())


def test_cilium_installs_beside_aws_node_and_every_earlier_pod_is_on_the_old_cni(
        twin: Twin, clients: Clients, custom: Any, story: dict[str, Any]) -> None:
    clients.core.create_namespaced_pod("default", bare_pod(BARE))
    wait_until(lambda: f"default/{BARE}" in wired_by(twin, AWS_CNI), "the bare pod on aws-cni")
    before = {key(p) for p in twin_pods(twin) if not p["spec"].get("hostNetwork")}
    for workload in ("kube-system/coredns-", "default/web-", "default/db-"):
        assert any(k.startswith(workload) for k in before), f"the scenario has {workload}* pods"
    assert reported(clients, custom) == before, "no Cilium yet: every pod that needs a CNI is on the old one"

    values = cilium.in_place_values(cluster_name=twin.cluster_name, region=twin.region)
    cilium.deploy(clients.api_client, CHART, values)
    wait_until(lambda: both_cni_configs(twin), "05-cilium.conflist first and 10-aws.conflist kept on every node")
    wait_until(lambda: not pending(twin), lambda: f"every pod running: {pending(twin)}")

    now = reported(clients, custom)
    assert before <= now, f"earlier pods not reported: {sorted(before - now)}"
    assert wired_by(twin, AWS_CNI) <= now, "every pod aws-cni wired is reported"
    assert not now & wired_by(twin, CILIUM), "no pod Cilium wired is reported"
    story["before"] = before


def test_a_pod_created_after_cilium_is_wired_by_it_and_not_reported(twin: Twin, clients: Clients,
                                                                    custom: Any) -> None:
    clients.core.create_namespaced_pod("default", bare_pod("fresh"))
    wait_until(lambda: "default/fresh" in wired_by(twin, CILIUM) | wired_by(twin, AWS_CNI), "the new pod running")
    assert "default/fresh" in wired_by(twin, CILIUM), "a new pod gets Cilium (05-cilium.conflist sorts first)"
    wait_until(lambda: "default/fresh" not in reported(clients, custom), "its CiliumEndpoint")
    cep = custom.get_namespaced_custom_object("cilium.io", "v2", "default", "ciliumendpoints", "fresh")
    pod = clients.core.read_namespaced_pod("fresh", "default")
    assert cep["status"]["networking"]["addressing"][0]["ipv4"] == pod.status.pod_ip


def test_the_plan_restarts_kube_system_first_and_leaves_the_bare_pod_to_a_human(
        twin: Twin, clients: Clients, custom: Any, story: dict[str, Any]) -> None:
    plan = restarts.restart_plan(clients.apps, clients.core, custom)
    relay = "Deployment kube-system/hubble-relay"
    relay_on_aws_cni = any(k.startswith("kube-system/hubble-relay-") for k in wired_by(twin, AWS_CNI))
    targets = [w.target for w in plan.workloads]
    assert [t for t in targets if t != relay] == [
        "Deployment kube-system/coredns", "Deployment default/web", "StatefulSet default/db"]
    assert (relay in targets) is relay_on_aws_cni, "hubble-relay is restarted when aws-cni wired it"
    if relay_on_aws_cni:
        assert targets.index(relay) == 1, "kube-system's Deployments first, by name"
    assert [key(p) for p in plan.bare_pods] == [f"default/{BARE}"]
    assert plan.other_pods == []
    story["plan"] = plan


def test_restarting_the_plan_one_by_one_moves_every_controller_owned_pod_to_cilium(
        twin: Twin, clients: Clients, custom: Any, policy: Any, story: dict[str, Any]) -> None:
    plan: restarts.Plan = story["plan"]
    for workload in plan.workloads:
        wait_for_budget(policy, workload)
        change = restarts.restart(clients.apps, workload, restarted_at=RUN)
        assert change is not None and change.action == "patch", change
        assert all(path.startswith("spec.template.metadata.annotations") for path in change.after), change
        assert f"'{RESTARTED_AT}': '{RUN}'" in str(change.after) or change.after.get(
            f"spec.template.metadata.annotations.{RESTARTED_AT}") == RUN, change
        message = wait_rolled_out(clients, workload)
        assert "rolled out" in message or "rolling update complete" in message
    wait_until(lambda: reported(clients, custom) <= {f"default/{BARE}"},
               "every restarted workload's old pods gone")
    left = old_cni.pods_on_old_cni(clients.core, custom)
    owned = [key(p) for p in left if old_cni.owner_kind(p) != "bare"]
    assert owned == [], f"controller-owned pods still on the old CNI: {old_cni.summary(left)}"
    assert {key(p) for p in left} == {f"default/{BARE}"}
    assert reported(clients, custom) == wired_by(twin, AWS_CNI), "the report agrees with the twin"


def test_the_bare_pod_stays_reported_until_it_is_recreated(twin: Twin, clients: Clients, custom: Any) -> None:
    assert f"default/{BARE}" in reported(clients, custom)
    clients.core.delete_namespaced_pod(BARE, "default", grace_period_seconds=0)
    wait_until(lambda: not any(name_of(p) == BARE for p in items(clients.core.list_namespaced_pod, "default")),
               "the bare pod gone")
    clients.core.create_namespaced_pod("default", bare_pod(BARE))
    wait_until(lambda: f"default/{BARE}" in wired_by(twin, CILIUM) | wired_by(twin, AWS_CNI), "the new pod running")
    assert f"default/{BARE}" in wired_by(twin, CILIUM)
    wait_until(lambda: f"default/{BARE}" not in reported(clients, custom), "its CiliumEndpoint")
    assert reported(clients, custom) == set()
    assert restarts.restart_plan(clients.apps, clients.core, custom).workloads == []


def test_a_second_restart_for_the_same_run_changes_nothing(clients: Clients, custom: Any,
                                                           story: dict[str, Any]) -> None:
    web = next(w for w in story["plan"].workloads if w.name == "web")
    before = clients.apps.read_namespaced_deployment("web", "default")
    pods_before = {p.metadata.uid for p in clients.core.list_namespaced_pod("default", label_selector="app=web").items}
    assert restarts.restart(clients.apps, web, restarted_at=RUN) is None, "already restarted by this run"
    dry = restarts.restart(clients.apps, web, restarted_at="2026-12-04T00:00:00Z", dry_run=True)
    assert dry is not None and dry.dry_run, "another run's value would patch (dry run: it does not)"
    assert restarts.restart(clients.apps, restarts.Workload("Deployment", "default", "web"),
                            restarted_at="2026-12-04T00:00:00Z") is None, "no pod left on the old CNI"
    after = clients.apps.read_namespaced_deployment("web", "default")
    assert (after.metadata.generation, after.metadata.resource_version) == \
        (before.metadata.generation, before.metadata.resource_version)
    assert after.spec.template.metadata.annotations[RESTARTED_AT] == RUN
    time.sleep(0.5)
    assert {p.metadata.uid for p in clients.core.list_namespaced_pod("default", label_selector="app=web").items} \
        == pods_before, "no pod restarted"


def test_a_workload_whose_budget_allows_no_disruption_is_reported_blocked(
        twin: Twin, clients: Clients, policy: Any, story: dict[str, Any]) -> None:
    web = next(w for w in story["plan"].workloads if w.name == "web")
    db = next(w for w in story["plan"].workloads if w.name == "db")
    policy.create_namespaced_pod_disruption_budget("default", {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": STRICT_PDB, "namespace": "default"},
        "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"app": "web"}}}})
    wait_until(lambda: (policy.read_namespaced_pod_disruption_budget(STRICT_PDB, "default").status or
                        k8s.V1PodDisruptionBudgetStatus(current_healthy=0, desired_healthy=0,
                                                        disruptions_allowed=0, expected_pods=0)).expected_pods,
               "the budget's status")
    reason = restarts.blocked_by_budget(policy, web)
    assert reason is not None and f"PodDisruptionBudget default/{STRICT_PDB} allows no disruption" in reason
    assert "PodDisruptionBudget default/web " not in reason, "the scenario's own budget allows one"
    assert restarts.blocked_by_budget(policy, db) is None
    policy.delete_namespaced_pod_disruption_budget(STRICT_PDB, "default")
    assert restarts.blocked_by_budget(policy, web) is None


def test_listing_the_old_cni_pods_takes_two_requests_whatever_the_number_of_pods(
        twin: Twin, clients: Clients) -> None:
    counting = CountingClients(twin)
    custom = k8s.CustomObjectsApi(counting.api_client)
    small = counting.count_call(lambda: old_cni.pods_on_old_cni(counting.core, custom))
    pods = len(twin_pods(twin))
    clients.apps.patch_namespaced_deployment_scale("web", "default", {"spec": {"replicas": 12}})
    wait_until(lambda: len(twin_pods(twin)) >= pods + 8 and not reported(clients, k8s.CustomObjectsApi(
        clients.api_client)), "8 more web pods, on Cilium")
    large = counting.count_call(lambda: old_cni.pods_on_old_cni(counting.core, custom))
    assert small == large and small.calls == 2, f"{small} requests, then {large} with 8 more pods"


def test_the_restarts_wait_in_the_triggerer_ends_when_the_rollout_is_done(clients: Clients) -> None:
    """The restart operator's deferred wait: ``ClusterCheckTrigger`` on ``workload_rolled_out`` with the
    arguments the operator gives it, over a rollout under way, ends with success once it is done."""
    import asyncio

    from cilium_migration.triggers import ClusterCheckTrigger

    body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: "2026-12-04T01:00:00Z"}}}}}
    clients.apps.patch_namespaced_deployment("web", "default", body)
    trigger = ClusterCheckTrigger(check="workload_rolled_out",
                                  arguments={"kind": "Deployment", "namespace": "default", "workload": "web"},
                                  aws_conn_id="aws_default", kubernetes_conn_id="kubernetes_default",
                                  region="us-west-1", poll_interval=0.5)

    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("no event")

    event = asyncio.run(asyncio.wait_for(first(), 120))  # a guard against a hang, not a timing assertion
    assert event["status"] == "success" and "successfully rolled out" in event["message"], event
    dep = clients.apps.read_namespaced_deployment("web", "default")
    assert dep.status.updated_replicas == dep.spec.replicas == dep.status.available_replicas
