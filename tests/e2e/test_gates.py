"""The approval gates' other ways out: a hold resumed later and rolled back, and a timeout.

**Hold, resume, roll back**: run 1 proceeds at ``approve_cutover.approve`` and answers "hold" at
``approve_decommission.approve``; it ends ``success`` (outcome "held after cutover") with the cluster in
the cutover state: every workload pod Ready on an ``ng-cilium`` node, every ``ng-1`` node cordoned and
marked with ``cilium-migration.io/cordoned``, aws-node and the Cilium release still there. Run 2 (same
twin, same params, a new trigger) resumes: preflight says so (its verified lines), the snapshot is run
1's (kept in the progress record), the steps run 1 already did record no change (the record holds them
back), and "roll back" at the cutover gate restores
the state before run 1, as ``helpers.cluster_state`` normalizes it (the exclusions of test_rollback: the
``cni`` labels and goldpinger; Deployment pods, moved away and back, are placed by node group, not
node): ``ng-1`` uncordoned without the annotation, workloads back on ``ng-1``, Cilium gone, ``ng-cilium``
at 0 with no nodes, aws-node's affinity unfenced, the mesh healthy, no PodDisruptionBudget violated.

**A timeout never approves**: with ``timeouts.approval`` a few seconds and nobody answering, the
cutover gate resolves itself to its default "roll back". On Airflow 3.3 the HITL task waits in
``awaiting_input`` (no trigger); the scheduler's timeout sweep (every
``[scheduler] trigger_timeout_check_interval``, 15 s by default) writes the defaults as the response,
with no user, and resumes the task. So ``approve_cutover.rejected`` runs, ``cutover.*`` is skipped, the
rollback completes and the cluster is as before the run.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from cilium_migration.nodes import CORDONED_BY
from localrun.rest import AirflowRest
from tests.e2e.conftest import Connected
from tests.e2e.helpers import (
    CUTOVER_GATE,
    DAG_ID,
    DECOMMISSION_GATE,
    NEW_GROUP,
    OLD_GROUP,
    Run,
    apps,
    assert_restored,
    assert_rolled_back,
    cluster_state,
    conf_for,
    core,
    drive,
    explain,
    hitl_details,
    nodes_of,
    pods_off,
)
from tests.e2e.test_rollback import CUTOVER_AND_LATER
from twin.cluster import Twin

pytestmark = pytest.mark.e2e

APPROVAL_TIMEOUT_S = 3  # the scheduler's sweep (every 15 s) applies the default soon after
DECOMMISSION_STEPS = ("decommission.delete_aws_node", "decommission.scale_old_nodegroups",
                      "decommission.old_nodegroups_at_zero", "decommission.old_nodes_gone",
                      "decommission.enable_unmanaged_pod_watcher", "decommission.all_nodes_ready",
                      "decommission.final_mesh_healthy")
# done by the held run: the resumed run finds them done and records no change
ALREADY_DONE = ("baseline.deploy_goldpinger", "fence_old_cni.label_old_nodes", "fence_old_cni.fence_aws_node",
                "cilium_nodes.scale_new_nodegroup", "cilium_nodes.install_cilium")


def cilium_release_secrets(twin: Twin) -> list[str]:
    return [s.metadata.name for s in core(twin).list_namespaced_secret(
        "kube-system", label_selector="owner=helm,name=cilium").items]


def assert_rejected_at_cutover(airflow: AirflowRest, run: Run) -> None:
    why = explain(airflow, run)
    assert run.tasks["approve_cutover.rejected"] == "success", why
    assert {t: run.tasks.get(t) for t in CUTOVER_AND_LATER} == dict.fromkeys(CUTOVER_AND_LATER, "skipped"), why
    assert_rolled_back(run.tasks, why)
    outcome = airflow.xcom(DAG_ID, run.run_id, "audit_report", key="outcome")
    assert outcome == "rolled back after rejection", why
    assert run.state == "success", why


def test_an_unanswered_cutover_gate_times_out_into_roll_back(cluster: Connected, airflow: AirflowRest) -> None:
    twin = cluster.twin
    before = cluster_state(twin)
    affinity_before = apps(twin).read_namespaced_daemon_set("aws-node", "kube-system").spec.template.spec.affinity

    run = drive(airflow, conf_for(cluster, timeouts={"approval": APPROVAL_TIMEOUT_S}), answers={},
                unanswered=[CUTOVER_GATE])

    why = explain(airflow, run)
    assert run.answered == [], why
    gate = hitl_details(airflow, run.run_id)[CUTOVER_GATE]
    assert gate["defaults"] == ["roll back"], gate
    assert gate["chosen_options"] == ["roll back"], f"the timeout applied no default: {gate}\n{why}"
    assert gate["responded_by_user"] is None, f"someone answered the gate: {gate}"
    waited = datetime.fromisoformat(gate["responded_at"]) - datetime.fromisoformat(gate["created_at"])
    assert waited.total_seconds() >= APPROVAL_TIMEOUT_S, f"resolved after {waited}, before its timeout"
    assert run.tasks[CUTOVER_GATE] == "success", why
    assert_rejected_at_cutover(airflow, run)
    assert_restored(cluster.twin, before, affinity_before, workloads_moved=False)


def test_a_held_migration_resumes_and_rolls_back_to_the_start(cluster: Connected, airflow: AirflowRest) -> None:
    twin = cluster.twin
    before = cluster_state(twin)
    affinity_before = apps(twin).read_namespaced_daemon_set("aws-node", "kube-system").spec.template.spec.affinity
    conf = conf_for(cluster)

    held = drive(airflow, conf, answers={CUTOVER_GATE: "proceed", DECOMMISSION_GATE: "hold"})

    why = explain(airflow, held)
    assert held.answered == [(CUTOVER_GATE, "proceed"), (DECOMMISSION_GATE, "hold")], why
    assert held.state == "success", why
    assert held.tasks["approve_decommission.hold"] == "success", why
    assert {t: held.tasks.get(t) for t in DECOMMISSION_STEPS} == dict.fromkeys(DECOMMISSION_STEPS, "skipped"), why
    assert {s for t, s in held.tasks.items() if t.startswith("rollback.")} == {"skipped"}, why
    assert str(airflow.xcom(DAG_ID, held.run_id, "audit_report", key="outcome")).startswith("held after cutover")
    assert pods_off(twin, NEW_GROUP) == [], "workload pods not on the Cilium nodes after cutover"
    old = nodes_of(twin, OLD_GROUP)
    assert len(old) == 3
    assert [n.metadata.name for n in old if not n.spec.unschedulable
            or CORDONED_BY not in (n.metadata.annotations or {})] == [], "old nodes not cordoned by the DAG"
    assert len(nodes_of(twin, NEW_GROUP)) == 3
    assert apps(twin).read_namespaced_daemon_set("aws-node", "kube-system") is not None
    assert apps(twin).read_namespaced_daemon_set("cilium", "kube-system") is not None
    assert cilium_release_secrets(twin) != []

    resumed = drive(airflow, conf, answers={CUTOVER_GATE: "roll back"})

    why = explain(airflow, resumed)
    assert resumed.answered == [(CUTOVER_GATE, "roll back")], why
    verified = airflow.xcom(DAG_ID, resumed.run_id, "preflight.checks")
    assert any("resuming" in line for line in verified), verified
    first = airflow.xcom(DAG_ID, held.run_id, "preflight.snapshot")
    assert airflow.xcom(DAG_ID, resumed.run_id, "preflight.snapshot") == first, "the first run's snapshot is used"
    assert first["resumed"] is False
    changes = {t: airflow.xcom(DAG_ID, resumed.run_id, t, key="changes") for t in ALREADY_DONE}
    assert changes == dict.fromkeys(ALREADY_DONE, []), changes
    assert_rejected_at_cutover(airflow, resumed)
    assert_restored(cluster.twin, before, affinity_before, workloads_moved=True)
