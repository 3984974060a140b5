"""The in-place strategy end to end (``eks_cilium_migration_in_place``): Cilium beside the AWS VPC CNI on
the same nodes, pods restarted onto it, aws-node removed, every node replaced.

**Approved at both gates** (one run, module fixture). Before it starts, the test adds a bare pod (no
controller) on the AWS VPC CNI. The run must:

- end ``success`` with the rollback skipped;
- show the cross-CNI paths before any workload restarts: ``cilium_beside.mesh_healthy``'s verdict holds
  aws-cni<->cilium pings and a node whose goldpinger pods have both CNIs;
- hold ``restart_pods.no_pod_on_old_cni`` (deferred, its log naming the bare pod as bare) until the
  test deletes and recreates that pod, and pass only after it did (the test then deletes its pod, so the
  node roll has nothing it must refuse to evict);
- leave every workload pod Ready, wired by Cilium and with its CiliumEndpoint; no aws-node; no node of
  before the run (every one replaced through ``ng-1``, back at its size); no ``10-aws.conflist`` on any
  node; every Deployment at full strength, no PodDisruptionBudget violated at any time, the mesh
  healthy and the unmanaged-pod watcher on again.

Rejections at each gate: ``test_in_place_rollback.py`` (a module of its own: a twin's EKS state lives in
moto's per-process backend under the cluster's name, so two twins of the same cluster must not overlap,
and this module's twin lives until its last test).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client as k8s

from localrun.approvals import pick
from localrun.rest import AirflowRest, PendingApproval
from tests.e2e.conftest import Connected, connected_twin
from tests.e2e.helpers import (
    CNI_ANNOTATION,
    IN_PLACE_DAG_ID,
    OLD_GROUP,
    Run,
    conf_for,
    core,
    deployments_at_full_strength,
    describe_pod,
    explain,
    mesh_failures,
    node_groups,
    node_ready,
    nodes_of,
    pod_ready,
    stop_run,
    task_log,
    workload_pods,
)

pytestmark = pytest.mark.e2e

RESTARTS_GATE, REMOVAL_GATE = "approve_restarts.approve", "approve_removal.approve"
GATE_SENSOR = "restart_pods.no_pod_on_old_cni"
BARE = "lonely"
ROLLBACK = ("rollback.start", "rollback.restore_nodegroups", "rollback.nodes_ready", "rollback.uncordon_nodes",
            "rollback.ensure_aws_node", "rollback.aws_node_rolled_out", "rollback.arm_cni_uninstall",
            "rollback.cni_uninstall_armed", "rollback.uninstall_cilium", "rollback.restart_workloads_back",
            "rollback.no_pod_on_cilium", "rollback.ensure_goldpinger", "rollback.mesh_healthy")


def in_place_conf(cluster: Connected) -> dict[str, Any]:
    return conf_for(cluster, old_nodegroups=[OLD_GROUP])


def bare_pod() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": BARE, "namespace": "default"},
            "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}


def wait_running(api: k8s.CoreV1Api, name: str, timeout: float = 60.0) -> k8s.V1Pod:
    deadline = time.monotonic() + timeout
    while True:
        pod = api.read_namespaced_pod(name, "default")
        if pod.status.phase == "Running":
            return pod
        assert time.monotonic() < deadline, f"pod {name} not Running: {pod.status.phase}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def migrated(airflow: AirflowRest, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[tuple[Connected, Run, dict[str, Any]]]:
    directory = tmp_path_factory.mktemp("in-place")
    with connected_twin(airflow, directory) as cluster:
        api = core(cluster.twin)
        api.create_namespaced_pod("default", bare_pod())
        seen: dict[str, Any] = {"nodes_before": {n.metadata.name for n in api.list_node().items},
                                "bare_cni_before": (wait_running(api, BARE).metadata.annotations or {})
                                .get(CNI_ANNOTATION)}
        run_id = airflow.trigger(IN_PLACE_DAG_ID, in_place_conf(cluster))
        done = threading.Event()

        def unblock() -> None:
            """Once the gate has waited on the bare pod: recreate it (a restart by hand), note when."""
            while not done.is_set():
                try:
                    state = airflow.task_states(IN_PLACE_DAG_ID, run_id).get(GATE_SENSOR)
                    if state == "deferred":
                        seen["blocked_log"] = task_log(airflow, run_id, GATE_SENSOR, 1, dag_id=IN_PLACE_DAG_ID)
                        api.delete_namespaced_pod(BARE, "default", grace_period_seconds=0)
                        while any(p.metadata.name == BARE for p in api.list_namespaced_pod("default").items):
                            time.sleep(0.2)
                        seen["recreated_at"] = datetime.now(UTC)
                        api.create_namespaced_pod("default", bare_pod())
                        seen["bare_cni_after"] = (wait_running(api, BARE).metadata.annotations or {}).get(
                            CNI_ANNOTATION)
                        return
                except Exception as exc:  # the REST API and the twin stay up; note it and look again
                    seen.setdefault("errors", []).append(str(exc))
                time.sleep(0.5)

        answered: list[str] = []

        def decide(approval: PendingApproval) -> str | None:
            if approval.task_id == REMOVAL_GATE:
                if "recreated_at" not in seen:
                    return None  # the gate cannot have passed: wait (an assertion below says why)
                api.delete_namespaced_pod(BARE, "default", grace_period_seconds=0)  # the test's own pod
            answered.append(approval.task_id)
            seen.setdefault("bodies", {})[approval.task_id] = approval.body
            return pick(approval, wanted="proceed").option

        watcher = threading.Thread(target=unblock, daemon=True)
        watcher.start()
        try:
            state = airflow.follow(IN_PLACE_DAG_ID, run_id, decide=decide, timeout=420, poll=1.0)
        except BaseException:
            stop_run(airflow, run_id, dag_id=IN_PLACE_DAG_ID)
            raise
        finally:
            done.set()
        run = Run(run_id, state, airflow.task_states(IN_PLACE_DAG_ID, run_id), [(t, "proceed") for t in answered],
                  dag_id=IN_PLACE_DAG_ID)
        yield cluster, run, seen


@pytest.fixture
def cluster(migrated: tuple[Connected, Run, dict[str, Any]]) -> Connected:
    return migrated[0]


@pytest.fixture
def seen(migrated: tuple[Connected, Run, dict[str, Any]]) -> dict[str, Any]:
    return migrated[2]


@pytest.fixture
def run(migrated: tuple[Connected, Run, dict[str, Any]], airflow: AirflowRest) -> Run:
    run = migrated[1]
    if run.state != "success":
        pytest.fail(f"the in-place migration ended {run.state}\n{explain(airflow, run)}\n{migrated[2]}")
    return run


def test_the_run_succeeds_through_both_gates(run: Run, airflow: AirflowRest) -> None:
    assert [task for task, _ in run.answered] == [RESTARTS_GATE, REMOVAL_GATE], explain(airflow, run)
    assert {t: s for t, s in run.tasks.items() if t.startswith("rollback.") and s != "skipped"} == {}
    assert run.tasks["remove_old_cni.final_mesh_healthy"] == "success", explain(airflow, run)


def test_the_mesh_gate_saw_both_cnis_on_one_node_and_across_nodes(run: Run, airflow: AirflowRest) -> None:
    verdict = airflow.xcom(IN_PLACE_DAG_ID, run.run_id, "cilium_beside.mesh_healthy", key="mesh")
    assert isinstance(verdict, dict), verdict
    assert verdict["pairs"]["aws-cni<->cilium"]["ok"] > 0, verdict["pairs"]
    assert "both" in verdict["node_matrix"]["cnis"], verdict["node_matrix"]
    assert {"aws-cni", "cilium"} <= set(verdict["pods_by_cni"]), verdict["pods_by_cni"]


def test_a_pod_not_restarted_held_the_gate_until_it_was(run: Run, seen: dict[str, Any],
                                                         airflow: AirflowRest) -> None:
    assert seen["bare_cni_before"] == "aws-cni", seen
    assert f"default/{BARE}" in seen["blocked_log"] and "bare" in seen["blocked_log"], seen["blocked_log"]
    assert seen["bare_cni_after"] == "cilium", seen  # recreated: Cilium's configuration comes first
    gate = airflow.request("GET", f"/dags/{IN_PLACE_DAG_ID}/dagRuns/{run.run_id}/taskInstances/{GATE_SENSOR}")
    ended = datetime.fromisoformat(gate["end_date"].replace("Z", "+00:00"))
    assert gate["state"] == "success" and ended >= seen["recreated_at"], (gate, seen["recreated_at"])


def test_every_workload_pod_runs_on_cilium_with_its_endpoint(run: Run, cluster: Connected) -> None:
    twin = cluster.twin
    endpoints = {(e["metadata"]["namespace"], e["metadata"]["name"])
                 for e in k8s.CustomObjectsApi(twin.kube_client()).list_cluster_custom_object(
                     "cilium.io", "v2", "ciliumendpoints")["items"]}
    pods = workload_pods(twin)
    assert {p.metadata.name.rsplit("-", 2)[0] for p in pods} >= {"web", "coredns", "goldpinger"}
    wrong = [describe_pod(p) for p in pods if not pod_ready(p)
             or (p.metadata.annotations or {}).get(CNI_ANNOTATION) != "cilium"
             or (p.metadata.namespace, p.metadata.name) not in endpoints]
    assert wrong == []


def test_aws_node_is_gone_and_every_node_was_replaced_clean(run: Run, cluster: Connected,
                                                           seen: dict[str, Any]) -> None:
    twin = cluster.twin
    api = core(twin)
    daemonsets = {d.metadata.name for d in k8s.AppsV1Api(twin.kube_client()).list_namespaced_daemon_set(
        "kube-system").items}
    assert "aws-node" not in daemonsets
    nodes = api.list_node().items
    assert {n.metadata.name for n in nodes}.isdisjoint(seen["nodes_before"]), "a node of before the run is left"
    assert len(nodes_of(twin, OLD_GROUP)) == 3
    assert node_groups(twin)[OLD_GROUP]["scalingConfig"] == {"minSize": 3, "maxSize": 3, "desiredSize": 3}
    assert [n.metadata.name for n in nodes if not node_ready(n) or n.spec.unschedulable] == []
    assert {n: f for n, f in twin.cni_configs().items() if "10-aws.conflist" in f} == {}


def test_nothing_was_lost_or_disrupted_beyond_a_budget(run: Run, cluster: Connected) -> None:
    twin = cluster.twin
    assert deployments_at_full_strength(twin) == []
    assert twin.disruption is not None and twin.disruption.violations == []
    assert mesh_failures(twin) == []


def test_the_unmanaged_pod_watcher_is_on_again(run: Run, cluster: Connected) -> None:
    config = core(cluster.twin).read_namespaced_config_map("cilium-config", "kube-system")
    assert config.data.get("unmanaged-pod-watcher-interval") not in (None, "0"), config.data
