"""Acceptance 1: a full migration, approved at both gates, leaves the cluster on Cilium.

One real Airflow run of the DAG against a fresh twin (module fixture); each test then states one thing
the migrated cluster must show, read from the twin over HTTP (official client, boto3) or from its store:

- the run ends ``success`` and the audit report lists the changes made;
- every workload pod (neither a DaemonSet's nor hostNetwork) runs Ready on an ``ng-cilium`` node and was
  wired by Cilium; aws-node is gone; ``ng-1`` is at 0 with no nodes left; every node is Ready;
- goldpinger's full mesh is healthy; no PodDisruptionBudget was violated at any time during the run;
- Cilium's unmanaged-pod watcher is on again (``unmanaged-pod-watcher-interval`` not "0");
- re-running steps of the finished run (cleared over REST, nothing downstream) changes nothing;
- no file of the Airflow home (database, every component's log, every task log of this and the earlier
  runs of the session) holds private-key material, in clear or base64, or the twin's tokens.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from localrun.rest import AirflowRest
from tests.e2e.conftest import Connected, connected_twin
from tests.e2e.helpers import (
    CNI_ANNOTATION,
    CUTOVER_GATE,
    DAG_ID,
    DECOMMISSION_GATE,
    NEW_GROUP,
    NODEGROUP_LABEL,
    OLD_GROUP,
    Run,
    apps,
    clear_tasks,
    conf_for,
    core,
    describe_pod,
    drive,
    explain,
    mesh_failures,
    node_groups,
    node_ready,
    nodes_of,
    pod_ready,
    workload_pods,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def migrated(airflow: AirflowRest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Connected, Run]]:
    with connected_twin(airflow, tmp_path_factory.mktemp("happy")) as cluster:
        run = drive(airflow, conf_for(cluster), answers={CUTOVER_GATE: "proceed", DECOMMISSION_GATE: "proceed"})
        yield cluster, run


@pytest.fixture
def cluster(migrated: tuple[Connected, Run]) -> Connected:
    return migrated[0]


@pytest.fixture
def run(migrated: tuple[Connected, Run], airflow: AirflowRest) -> Run:
    run = migrated[1]
    if run.state != "success":
        pytest.fail(f"the migration run ended {run.state}\n{explain(airflow, run)}")
    return run


def test_run_succeeds_through_both_gates(run: Run, airflow: AirflowRest) -> None:
    assert [task for task, _ in run.answered] == [CUTOVER_GATE, DECOMMISSION_GATE], explain(airflow, run)
    skipped_rollback = {t: s for t, s in run.tasks.items() if t.startswith("rollback.")}
    assert set(skipped_rollback.values()) == {"skipped"}, skipped_rollback
    assert run.tasks["decommission.final_mesh_healthy"] == "success", explain(airflow, run)


def test_every_workload_pod_runs_on_cilium_nodes(run: Run, cluster: Connected) -> None:
    twin = cluster.twin
    groups = {n.metadata.name: n.metadata.labels.get(NODEGROUP_LABEL) for n in core(twin).list_node().items}
    pods = workload_pods(twin)
    names = {p.metadata.name.rsplit("-", 2)[0] for p in pods}
    assert {"web", "coredns", "goldpinger"} <= names, [describe_pod(p) for p in pods]
    wrong = [describe_pod(p) for p in pods
             if groups.get(p.spec.node_name) != NEW_GROUP or not pod_ready(p)
             or (p.metadata.annotations or {}).get(CNI_ANNOTATION) != "cilium"]
    assert wrong == [], "workload pods not Ready on Cilium nodes, wired by Cilium"


def test_the_old_cni_and_node_group_are_gone(run: Run, cluster: Connected) -> None:
    twin = cluster.twin
    daemonsets = {f"{d.metadata.namespace}/{d.metadata.name}"
                  for d in apps(twin).list_daemon_set_for_all_namespaces().items}
    assert "kube-system/aws-node" not in daemonsets
    assert node_groups(twin)[OLD_GROUP]["scalingConfig"]["desiredSize"] == 0
    assert nodes_of(twin, OLD_GROUP) == []
    new_nodes = nodes_of(twin, NEW_GROUP)
    assert len(new_nodes) == 3
    nodes = core(twin).list_node().items
    assert [n.metadata.name for n in nodes if not node_ready(n) or n.spec.unschedulable] == []


def test_the_goldpinger_mesh_is_fully_healthy(run: Run, cluster: Connected) -> None:
    assert mesh_failures(cluster.twin) == []


def test_no_disruption_budget_was_violated(run: Run, cluster: Connected) -> None:
    twin = cluster.twin
    assert twin.disruption is not None
    assert twin.disruption.violations == []


def test_the_unmanaged_pod_watcher_is_on_again(run: Run, cluster: Connected) -> None:
    config = core(cluster.twin).read_namespaced_config_map("cilium-config", "kube-system")
    assert config.data.get("unmanaged-pod-watcher-interval") not in (None, "0"), config.data


def test_the_audit_report_lists_the_changes(run: Run, cluster: Connected, airflow: AirflowRest) -> None:
    report = airflow.xcom(DAG_ID, run.run_id, "audit_report")
    assert isinstance(report, str), report
    assert "**Outcome:** completed" in report, report
    for row in ("| decommission.delete_aws_node | delete | DaemonSet kube-system/aws-node |",
                f"| decommission.scale_old_nodegroups | scale | Nodegroup {OLD_GROUP} |",
                f"| cilium_nodes.scale_new_nodegroup | scale | Nodegroup {NEW_GROUP} |",
                "| cilium_nodes.install_cilium | install | HelmRelease kube-system/cilium |",
                "| fence_old_cni.fence_aws_node | patch | DaemonSet kube-system/aws-node |"):
        assert row in report, f"missing {row!r} in\n{report}"
    old_nodes = {line.split("| Node ")[1].split(" ")[0] for line in report.splitlines()
                 if line.startswith("| cutover.cordon_old_nodes | cordon | Node ")}
    assert len(old_nodes) == 3, report
    assert "| cutover.move_workloads | evict | Pod " in report, report
    assert airflow.task_log(DAG_ID, run.run_id, "audit_report").count("| evict | Pod ") >= 1


# ---- idempotency: re-running finished steps --------------------------------------------------------

RERUN = ("cilium_nodes.scale_new_nodegroup", "cutover.cordon_old_nodes", "decommission.delete_aws_node",
         "decommission.scale_old_nodegroups", "decommission.enable_unmanaged_pod_watcher")


def test_rerunning_finished_steps_changes_nothing(run: Run, cluster: Connected, airflow: AirflowRest) -> None:
    """Cleared over REST (nothing downstream), each step finds the cluster already as wanted: it succeeds,
    records no change, and no object in the cluster is written (the store's resourceVersion holds)."""
    twin = cluster.twin
    rv_before, groups_before = twin.store.resource_version, node_groups(twin)
    clear_tasks(airflow, run.run_id, RERUN)
    state = airflow.follow(DAG_ID, run.run_id, decide=lambda a: None, timeout=180, poll=1.0)
    tasks = airflow.task_states(DAG_ID, run.run_id)
    assert state == "success", explain(airflow, run.run_id)
    assert {t: tasks[t] for t in RERUN} == dict.fromkeys(RERUN, "success")
    changes: dict[str, Any] = {t: airflow.xcom(DAG_ID, run.run_id, t, key="changes") for t in RERUN}
    assert changes == dict.fromkeys(RERUN, []), changes
    assert node_groups(twin) == groups_before
    assert twin.store.resource_version == rv_before, "a re-run step wrote to the cluster"


KEY_MARKERS = {  # "PRIVATE KEY" in clear, and in base64 at each of its three alignments
    "a PEM private key": b"PRIVATE KEY-----",
    "a base64 PEM private key": b"UFJJVkFURSBLRVkt",
    "a base64 PEM private key (+1)": b"SVZBVEUgS0VZ",
    "a base64 PEM private key (+2)": b"UklWQVRFIEtFWS0t",
}


def test_no_file_of_the_airflow_home_holds_key_material_or_a_token(run: Run, cluster: Connected,
                                                                     airflow_home: Any) -> None:
    markers = {**KEY_MARKERS, "the DAG's token": cluster.twin.rbac_token.encode(),
               "the admin token": cluster.twin.token.encode()}
    scanned, found = 0, []
    for path in sorted(p for p in airflow_home.rglob("*") if p.is_file()):
        data = path.read_bytes()
        scanned += 1
        found += [f"{what} in {path.relative_to(airflow_home)}" for what, marker in markers.items()
                  if marker in data]
    assert scanned > 20, f"only {scanned} files: is this the run's Airflow home?"
    assert any(p.suffix == ".db" for p in airflow_home.rglob("*")), "the database is scanned too"
    assert not found, "\n".join(found)
