"""Acceptance 1: a full migration, approved at both gates, leaves the cluster on Cilium.

One real Airflow run of the DAG against a fresh twin (module fixture), run as a rehearsal is: the twin
starts from a scenario ``python -m twin.capture`` took from a twin of the default cluster, and the run's
node-group params are the ones ``twin.rehearsal`` fills from it. Each test then states one thing the
migrated cluster must show, read from the twin over HTTP (official client, boto3) or from its store:

- the run ends ``success`` and the audit report lists the changes made;
- the run's "Migration report" tab shows it in headless Chromium, and its change list equals the DAG's
  writes in the twin's request log;
- every workload pod (neither a DaemonSet's nor hostNetwork) runs Ready on an ``ng-cilium`` node and was
  wired by Cilium; aws-node is gone; ``ng-1`` is at 0 with no nodes left; every node is Ready;
- goldpinger's full mesh is healthy; no PodDisruptionBudget was violated at any time during the run;
- Cilium's unmanaged-pod watcher is on again (``unmanaged-pod-watcher-interval`` not "0");
- re-running every forward step of the finished run (cleared over REST, nothing downstream) changes
  nothing, and the audit report still lists every change of the first tries;
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
    assert_report_of,
    captured_scenario,
    clear_tasks,
    comparable,
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
    record_commits,
    workload_pods,
)
from twin.rehearsal import params_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def migrated(airflow: AirflowRest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Connected, Run]]:
    directory = tmp_path_factory.mktemp("happy")
    captured = captured_scenario("default", directory)
    with connected_twin(airflow, directory, scenario=str(captured)) as cluster:
        rehearsal = params_for(cluster.twin.scenario)
        run = drive(airflow, conf_for(cluster, **rehearsal),
                    answers={CUTOVER_GATE: "proceed", DECOMMISSION_GATE: "proceed"})
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
    for row in ("| decommission.delete_aws_node | 1 | delete | DaemonSet kube-system/aws-node |",
                f"| decommission.scale_old_nodegroups | 1 | scale | Nodegroup {OLD_GROUP} |",
                f"| cilium_nodes.scale_new_nodegroup | 1 | scale | Nodegroup {NEW_GROUP} |",
                "| cilium_nodes.install_cilium | 1 | install | HelmRelease kube-system/cilium |",
                "| fence_old_cni.fence_aws_node | 1 | patch | DaemonSet kube-system/aws-node |"):
        assert row in report, f"missing {row!r} in\n{report}"
    old_nodes = {line.split("| Node ")[1].split(" ")[0] for line in report.splitlines()
                 if line.startswith("| cutover.cordon_old_nodes | 1 | cordon | Node ")}
    assert len(old_nodes) == 3, report
    assert "| cutover.move_workloads | 1 | evict | Pod " in report, report
    assert airflow.task_log(DAG_ID, run.run_id, "audit_report").count("| evict | Pod ") >= 1


def test_the_report_tab_shows_the_run_and_lists_what_the_twin_saw_written(run: Run, cluster: Connected,
                                                                            airflow: AirflowRest) -> None:
    """Issue 9: the run's "Migration report" tab, in headless Chromium, shows the outcome, both approvals
    with their approver, every change and both plots (screenshots in ``run/screenshots/happy-path-*.png``);
    its change list equals the DAG's writes in the twin's own request log (``helpers.dag_writes``: the
    change ledger and Helm's release records left out). Runs before the re-run test below, which adds
    tries of its own."""
    assert_report_of(airflow, cluster.twin, run, outcome="completed", approvals=2, screenshot_name="happy-path")


# ---- re-runs never go backwards ------------------------------------------------------------------


def forward_steps(airflow: AirflowRest) -> list[str]:
    """Every task of the DAG that writes to the cluster or EKS on the way forward (rollback excluded)."""
    from cilium_migration.operators import MigrationOperator, PreflightCheckOperator

    writers = {cls.__name__ for cls in MigrationOperator.__subclasses__()} - {PreflightCheckOperator.__name__}
    tasks = airflow.request("GET", f"/dags/{DAG_ID}/tasks")["tasks"]
    return [t["task_id"] for t in tasks if t["operator_name"] in writers and not t["task_id"].startswith("rollback.")]


def report_rows(report: object) -> list[str]:
    return sorted(line for line in str(report).splitlines() if line.startswith("| ") and not line.startswith("| task |"))


def test_rerunning_every_step_after_the_migration_changes_nothing(run: Run, cluster: Connected,
                                                                  airflow: AirflowRest) -> None:
    """Every forward step cleared over REST (nothing downstream), the audit report with them: steps of an
    earlier phase leave the later state in place and say so (``install_cilium`` does not turn the
    unmanaged-pod watcher off again), steps of the last phase find nothing to do. The store commits no
    write but node heartbeats, every object is as before (heartbeat fields aside: the only ones the twin
    changes by itself), the node groups too; and the report still lists every change of the first tries,
    with their try number, although XCom now holds the second tries' empty lists."""
    twin = cluster.twin
    steps = forward_steps(airflow)
    assert len(steps) >= 13 and "cilium_nodes.install_cilium" in steps, steps
    before, groups_before = comparable(twin.store.dump()), node_groups(twin)
    rows_before = report_rows(airflow.xcom(DAG_ID, run.run_id, "audit_report"))
    committed = record_commits(twin)

    clear_tasks(airflow, run.run_id, [*steps, "audit_report"])
    state = airflow.follow(DAG_ID, run.run_id, decide=lambda a: None, timeout=240, poll=1.0)

    why = explain(airflow, run.run_id)
    tasks = airflow.task_states(DAG_ID, run.run_id)
    assert state == "success", why
    assert {t: tasks[t] for t in steps} == dict.fromkeys(steps, "success"), why
    assert committed == [], "re-run steps wrote to the cluster:\n" + "\n".join(committed)
    assert comparable(twin.store.dump()) == before
    assert node_groups(twin) == groups_before
    changes: dict[str, Any] = {t: airflow.xcom(DAG_ID, run.run_id, t, key="changes") for t in steps}
    assert changes == dict.fromkeys(steps, []), changes
    log = airflow.task_log(DAG_ID, run.run_id, "cilium_nodes.install_cilium", try_number=2)
    assert "phase decommission has already started" in log, log[-2000:]
    rows_after = report_rows(airflow.xcom(DAG_ID, run.run_id, "audit_report"))
    assert len(rows_before) > 30 and rows_after == rows_before
    assert all(row.split(" | ")[1] == "1" for row in rows_after), "every change was made by a first try"


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
