"""Acceptance 2 and 3: a rejection, and a failing gate, roll the cluster back to where it started.

**Rejected at the first approval** ("roll back" at ``approve_cutover.approve``): every ``rollback.*``
step succeeds, the audit report says "rolled back after rejection", and the cluster equals its state
before the run was triggered, as ``helpers.cluster_state`` normalizes it: nodes (labels, taints,
cordon, readiness), DaemonSet and Deployment specs (aws-node's affinity among them), which objects exist,
which pods run where (by owner and node: DaemonSet pods are recreated by the fence's rollout), and the
node groups' scaling configs, labels and taints. What the DAG documents it leaves is left out: the
``cni=aws-cni`` node labels, goldpinger, which the rollback keeps running, and the DAG's own records
(progress record, change ledgers; README, "Rolling back").
The run ends ``success``: the audit report fails a run only when a task failed. On top: ``ng-cilium``
back at 0 with no nodes, no Cilium object or Helm release left, the mesh healthy, no PodDisruptionBudget
violated. The run's "Migration report" tab shows the rollback, its change list equal to the DAG's writes
in the twin's request log.

**Rejected at the second approval** ("roll back" at ``approve_decommission.approve``, after cutover):
workloads move back to the old nodes, Cilium is uninstalled with nothing of its release left, and the
cluster equals its state before the run (workloads compared by node group).

**A failing gate**: with cross-CNI traffic broken in the twin from the start (the earlier mesh gates
see only aws-cni pods and pass; ``cilium_nodes.mesh_healthy`` is the first to check across both CNIs),
that gate fails within its short ``mesh`` timeout, the run stops before anything is cordoned
(``cutover.cordon_old_nodes`` never runs, and a store listener sees no ``ng-1`` node cordoned at any
moment), the rollback completes (with the fault still on: it needs no cross-CNI traffic), and nothing
is lost: every workload pod Running and Ready, every Deployment at full strength, no budget violated.
The run ends ``failed``: the audit report fails it on purpose after a failure.

**A preflight failure** (a node group that does not exist): nothing was changed, so nothing is rolled
back; the failed task's log, as ``helpers.explain`` renders it, names the cause.
"""

from __future__ import annotations

from typing import Any

import pytest

from localrun.rest import AirflowRest
from tests.e2e.conftest import Connected
from tests.e2e.helpers import (
    CUTOVER_GATE,
    DAG_ID,
    DECOMMISSION_GATE,
    NEW_GROUP,
    NODEGROUP_LABEL,
    OLD_GROUP,
    ROLLBACK_STEPS,
    apps,
    assert_report_of,
    assert_restored,
    assert_rolled_back,
    cilium_leftovers,
    cluster_state,
    conf_for,
    core,
    deployments_at_full_strength,
    describe_pod,
    drive,
    explain,
    node_groups,
    nodes_of,
    pod_ready,
    workload_pods,
)
from twin.resources import NODES, ResourceType
from twin.store import Obj

pytestmark = pytest.mark.e2e

CUTOVER_AND_LATER = ("cutover.cordon_old_nodes", "cutover.move_workloads", "approve_decommission.approve",
                     "decommission.delete_aws_node", "decommission.scale_old_nodegroups")


def test_rejecting_cutover_restores_the_preflight_state(cluster: Connected, airflow: AirflowRest) -> None:
    twin = cluster.twin
    before = cluster_state(twin)
    affinity_before = apps(twin).read_namespaced_daemon_set("aws-node", "kube-system").spec.template.spec.affinity

    run = drive(airflow, conf_for(cluster), answers={CUTOVER_GATE: "roll back"})

    why = explain(airflow, run)
    assert run.answered == [(CUTOVER_GATE, "roll back")], why
    assert run.tasks["approve_cutover.rejected"] == "success", why
    assert_rolled_back(run.tasks, why)
    assert {t: run.tasks.get(t) for t in CUTOVER_AND_LATER} == dict.fromkeys(CUTOVER_AND_LATER, "skipped"), why
    report = airflow.xcom(DAG_ID, run.run_id, "audit_report")
    assert "**Outcome:** rolled back after rejection" in str(report), report
    # The audit report "fails the run when a task failed" (DAG docstring, README "Rolling back"): after a
    # rejection no task failed, so the run ends success and its outcome says what happened.
    assert run.state == "success", f"run ended {run.state!r}; audit report:\n{report}\n{why}"

    assert_restored(cluster.twin, before, affinity_before, workloads_moved=False)
    # Issue 9: the report tab of this rolled-back run (run/screenshots/rolled-back-*.png), its change list
    # equal to the DAG's writes in the twin's request log.
    assert_report_of(airflow, twin, run, outcome="rolled back after rejection", approvals=1,
                     screenshot_name="rolled-back")


def test_rejecting_decommission_restores_the_preflight_state(cluster: Connected, airflow: AirflowRest) -> None:
    twin = cluster.twin
    before = cluster_state(twin)
    affinity_before = apps(twin).read_namespaced_daemon_set("aws-node", "kube-system").spec.template.spec.affinity

    run = drive(airflow, conf_for(cluster), answers={CUTOVER_GATE: "proceed", DECOMMISSION_GATE: "roll back"})

    why = explain(airflow, run)
    assert run.answered == [(CUTOVER_GATE, "proceed"), (DECOMMISSION_GATE, "roll back")], why
    assert run.tasks["cutover.move_workloads"] == "success", why
    assert run.tasks["approve_decommission.rejected"] == "success", why
    assert_rolled_back(run.tasks, why)
    assert run.tasks["decommission.delete_aws_node"] == "skipped", why
    assert run.state == "success", why
    assert_restored(cluster.twin, before, affinity_before, workloads_moved=True)


def test_a_failing_mesh_gate_rolls_back_before_any_cordon(cluster: Connected, airflow: AirflowRest) -> None:
    twin = cluster.twin
    cordoned: list[str] = []

    def watch_cordons(event: str, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        labels = obj["metadata"].get("labels") or {}
        if rt is NODES and obj["spec"].get("unschedulable") and labels.get(NODEGROUP_LABEL) == OLD_GROUP:
            cordoned.append(obj["metadata"]["name"])

    twin.store.add_listener(watch_cordons)
    twin.faults.update({"cross_cni_broken": True})
    conf: dict[str, Any] = conf_for(cluster, timeouts={"mesh": 10, "poll_interval": 1})

    run = drive(airflow, conf, answers={})

    why = explain(airflow, run)
    for gate in ("baseline.mesh_healthy", "fence_old_cni.mesh_healthy"):
        assert run.tasks[gate] == "success", f"{gate} (aws-cni pods only) must not see the fault\n{why}"
    assert run.tasks["cilium_nodes.mesh_healthy"] == "failed", why
    assert run.tasks.get(CUTOVER_GATE) in (None, "skipped", "upstream_failed"), why
    assert run.tasks.get("cutover.cordon_old_nodes") in (None, "skipped", "upstream_failed"), why
    assert cordoned == [], f"old nodes were cordoned: {sorted(set(cordoned))}"
    assert run.tasks["rollback.on_gate_failure"] == "success", why
    assert_rolled_back(run.tasks, why)
    assert run.state == "failed", why

    pods = workload_pods(twin)
    assert {p.metadata.name.rsplit("-", 2)[0] for p in pods} >= {"web", "coredns"}
    assert [describe_pod(p) for p in pods if not pod_ready(p)] == []
    assert deployments_at_full_strength(twin) == []
    assert twin.disruption is not None and twin.disruption.violations == []
    assert nodes_of(twin, NEW_GROUP) == []
    old = nodes_of(twin, OLD_GROUP)
    assert len(old) == 3 and not any(n.spec.unschedulable for n in old)
    assert cilium_leftovers(twin) == []
    assert [n.metadata.name for n in core(twin).list_node().items if n.spec.unschedulable] == []


def test_a_preflight_failure_changes_nothing_and_rolls_back_nothing(cluster: Connected,
                                                                   airflow: AirflowRest) -> None:
    """A node group that does not exist is a permanent error: preflight fails at once (no retries), with
    the reason in its log; no snapshot was taken, so the rollback is skipped; nothing was written."""
    twin = cluster.twin
    groups_before = node_groups(twin)
    seen = len(twin.api.request_log)

    run = drive(airflow, conf_for(cluster, old_nodegroups=[OLD_GROUP, "ng-missing"]), answers={})

    why = explain(airflow, run)
    assert run.state == "failed", why
    assert run.tasks["preflight.checks"] == "failed", why
    assert "ng-missing" in why, "the failed task's log names the missing node group"
    rollback = {t: s for t, s in run.tasks.items() if t in ROLLBACK_STEPS}
    assert rollback == dict.fromkeys(ROLLBACK_STEPS, "skipped"), why
    writes = [r for r in twin.api.request_log[seen:] if r.verb not in ("get", "list", "watch", "")]
    assert writes == []
    assert node_groups(twin) == groups_before
