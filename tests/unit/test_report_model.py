"""The report's model: built from plain rows (a run, its task tries, HITL details, XComs).

- phases are TaskGroups, spanning their first start to their last end, coloured by the worst state;
- approvals carry who answered (``responded_by``), what, and when; a waiting one has no answer yet;
- the ``report`` XCom's change list (every try) wins over the per-task ``changes`` XComs (last tries),
  which a run still going shows instead;
- the mesh verdicts and the preflight snapshot come from their tasks' XComs.

``sample_report`` is the fixed report the rendering tests use.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from cilium_migration.audit import object_change
from cilium_migration.report import model

T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
SECRET_VALUE = "c3VwZXItc2VjcmV0LXZhbHVl"  # what no report may show


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def secret_change() -> dict[str, Any]:
    """A Secret created by the Helm release, as the ledger holds it (redacted where it was made)."""
    created = {"kind": "Secret", "metadata": {"name": "cilium-ca", "namespace": "kube-system",
                                              "resourceVersion": "7"}, "data": {"ca.key": SECRET_VALUE}}
    return object_change("Secret", "cilium-ca", "kube-system", None, created).to_dict()


def rows() -> dict[str, Any]:
    tries = [
        {"task_id": "preflight.checks", "try_number": 1, "state": "success", "start_date": at(0), "end_date": at(5)},
        {"task_id": "preflight.snapshot", "try_number": 1, "state": "success", "start_date": at(5), "end_date": at(8)},
        {"task_id": "cilium_nodes.install_cilium", "try_number": 1, "state": "failed", "start_date": at(10),
         "end_date": at(20)},
        {"task_id": "cilium_nodes.install_cilium", "try_number": 2, "state": "success", "start_date": at(35),
         "end_date": at(50)},
        {"task_id": "approve_cutover.approve", "try_number": 1, "state": "success", "start_date": at(50),
         "end_date": at(70)},
        {"task_id": "rollback.start", "try_number": 0, "state": "skipped", "start_date": None, "end_date": None},
        {"task_id": "audit_report", "try_number": 1, "state": "success", "start_date": at(80), "end_date": at(82)},
    ]
    hitl = [{"task_id": "approve_cutover.approve", "try_number": 1, "subject": "Cut over dc-migrate to Cilium?",
             "options": ["proceed", "roll back"], "chosen_options": ["proceed"],
             "responded_by": {"id": "alice", "name": "alice"}, "created_at": at(51), "responded_at": at(68)},
            {"task_id": "approve_decommission.approve", "try_number": 1, "subject": "Decommission?",
             "options": ["proceed", "hold", "roll back"], "chosen_options": None, "responded_by": None,
             "created_at": at(90), "responded_at": None}]
    changes = [
        {"task": "cilium_nodes.install_cilium", "try": 1, "action": "create", "kind": "ServiceAccount",
         "name": "cilium", "namespace": "kube-system", "before": None, "after": {"resourceVersion": "5"},
         "dry_run": False, "at": "2026-12-03T10:00:12Z"},
        {"task": "cilium_nodes.install_cilium", "try": 2, **secret_change()},
        {"task": "cutover.cordon_old_nodes", "try": 1, "action": "cordon", "kind": "Node", "name": "ip-10-0-1-1",
         "namespace": None, "before": {"unschedulable": False}, "after": {"unschedulable": True},
         "dry_run": False, "at": "2026-12-03T10:01:12Z"},
    ]
    matrix = {"nodes": [{"name": "ip-10-0-1-1", "cni": "aws-cni"}, {"name": "ip-10-0-2-1", "cni": "cilium"}],
              "results": {"ip-10-0-1-1": {"ip-10-0-1-1": "ok", "ip-10-0-2-1": "failed"},
                          "ip-10-0-2-1": {"ip-10-0-1-1": "ok", "ip-10-0-2-1": "ok"}}}
    xcoms = [
        {"task_id": "audit_report", "key": "report", "value": {
            "outcome": "completed", "changes": changes, "mesh_matrix": matrix,
            "params": {"cluster_name": "dc-migrate", "window_cron": "0 2 * * SUN", "window_minutes": 120,
                       "window_timezone": "Europe/Paris", "timeouts": {"mesh": 45}},
            "cluster_after": {"nodegroups": {"ng-1": {"minSize": 0, "maxSize": 3, "desiredSize": 0}},
                              "nodes": [{"name": "ip-10-0-2-1", "nodegroup": "ng-cilium", "cni": "cilium",
                                         "ready": True, "cordoned": False}], "aws_node": False},
            "progress": {"phase": "decommission", "run_id": "manual__1", "history": []}}},
        {"task_id": "cilium_nodes.install_cilium", "key": "changes", "value": [secret_change()]},
        {"task_id": "cilium_nodes.mesh_healthy", "key": "mesh", "value": {
            "healthy": False, "summary": "mesh unhealthy: 1 problem(s)",
            "pairs": {"aws-cni<->cilium": {"ok": 1, "failed": ["a -> b: ping failed"], "healthy": False},
                      "aws-cni<->aws-cni": {"ok": 1, "failed": [], "healthy": True}},
            "node_matrix": {"nodes": ["old-1", "new-1"], "cnis": ["aws-cni", "cilium"],
                            "ok": [[1, 0], [1, 0]], "failed": [[0, 1], [0, 0]]}}},
        {"task_id": "baseline.mesh_healthy", "key": "mesh", "value": {
            "healthy": True, "summary": "mesh healthy: 3 goldpinger pods, 9 pings OK", "pairs": {}}},
        {"task_id": "preflight.snapshot", "key": "return_value", "value": {
            "cluster": "dc-migrate", "nodegroups": {"ng-1": {"minSize": 3, "maxSize": 3, "desiredSize": 3}},
            "old_nodes": ["ip-10-0-1-1"], "new_nodes": [], "old_nodes_cordoned": [], "aws_node": {"spec": {}}}},
    ]
    run = {"dag_id": "eks_cilium_migration", "run_id": "manual__2026-12-03T10:00:00+00:00", "state": "success",
           "start_date": T0, "end_date": at(82), "conf": {"cluster_name": "dc-migrate"}}
    return {"run": run, "tries": tries, "hitl": hitl, "xcoms": xcoms,
            "task_order": ["preflight.checks", "preflight.snapshot", "baseline.mesh_healthy",
                           "cilium_nodes.install_cilium", "cilium_nodes.mesh_healthy", "audit_report"]}


def sample_report() -> model.Report:
    return model.build(**rows())


def test_phases_span_their_tries_and_take_the_worst_state() -> None:
    phases = {p.name: p for p in sample_report().phases}
    assert [p.name for p in sample_report().phases] == ["preflight", "cilium_nodes", "approve_cutover",
                                                        "audit_report", "rollback"]
    assert (phases["preflight"].start, phases["preflight"].end, phases["preflight"].state) == (at(0), at(8), "success")
    assert (phases["cilium_nodes"].start, phases["cilium_nodes"].end) == (at(10), at(50))
    assert phases["cilium_nodes"].state == "failed" and phases["cilium_nodes"].tries == 2
    assert phases["rollback"].state == "skipped" and phases["rollback"].start is None


def test_a_phase_whose_tasks_were_all_skipped_is_skipped() -> None:
    """Airflow gives a skipped task a start and end date: the phase is still skipped, not done."""
    data = rows()
    data["tries"] = [*data["tries"], {"task_id": "rollback.ensure_aws_node", "try_number": 0, "state": "skipped",
                                      "start_date": at(79), "end_date": at(79)}]
    phases = {p.name: p for p in model.build(**data).phases}
    assert phases["rollback"].state == "skipped"


def test_approvals_say_who_answered_what_and_when() -> None:
    cutover, decommission = sample_report().approvals
    assert (cutover.task_id, cutover.chosen, cutover.user, cutover.responded_at) == (
        "approve_cutover.approve", ["proceed"], "alice", at(68))
    assert not decommission.answered and decommission.user is None


def test_the_stored_report_lists_every_try() -> None:
    report = sample_report()
    assert report.changes_complete
    assert [(c["task"], c["try"]) for c in report.changes] == [
        ("cilium_nodes.install_cilium", 1), ("cilium_nodes.install_cilium", 2), ("cutover.cordon_old_nodes", 1)]
    assert report.counts() == {"changes": 3, "tasks": 2, "approvals": 1}
    assert report.outcome == "completed"
    assert report.window == {"window_cron": "0 2 * * SUN", "window_minutes": 120, "window_timezone": "Europe/Paris"}


def test_a_run_still_going_shows_the_changes_so_far() -> None:
    data = rows()
    data["xcoms"] = [x for x in data["xcoms"] if x["key"] != "report"]
    data["run"] = {**data["run"], "state": "running", "end_date": None}
    report = model.build(**data)
    assert not report.changes_complete
    assert [c["task"] for c in report.changes] == ["cilium_nodes.install_cilium"]
    assert report.outcome == "in progress" and report.after is None
    assert report.params == {"cluster_name": "dc-migrate"}  # the run's conf until the report has run


def test_mesh_verdicts_in_task_order_with_failing_pairs() -> None:
    verdicts = sample_report().mesh_verdicts
    assert [(v.task_id, v.healthy, v.failing) for v in verdicts] == [
        ("baseline.mesh_healthy", True, []), ("cilium_nodes.mesh_healthy", False, ["aws-cni<->cilium"])]


def test_a_gates_node_matrix_becomes_a_matrix_of_results() -> None:
    """The gate's counts per node pair: a failed ping makes the cell failed, no ping at all missing."""
    baseline, both = sample_report().mesh_verdicts
    assert baseline.matrix is None
    assert both.matrix == {"nodes": [{"name": "old-1", "cni": "aws-cni"}, {"name": "new-1", "cni": "cilium"}],
                           "results": {"old-1": {"old-1": "ok", "new-1": "failed"},
                                       "new-1": {"old-1": "ok", "new-1": "missing"}}}
    assert model.node_matrix({"nodes": ["a"]}) is None


def test_the_snapshot_is_the_cluster_before_and_the_tab_is_linked() -> None:
    report = sample_report()
    assert report.before is not None and report.before["old_nodes"] == ["ip-10-0-1-1"]
    assert report.tab_path == ("/dags/eks_cilium_migration/runs/manual__2026-12-03T10%3A00%3A00%2B00%3A00"
                               "/plugin/migration-report")
