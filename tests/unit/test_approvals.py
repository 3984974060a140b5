"""Approval evidence and outcomes: what a human reads, and how a run's end is named."""

from __future__ import annotations

import pytest

from cilium_migration.approvals import CUTOVER_CHANGES, PROCEED, ROLL_BACK, evidence
from cilium_migration.operators import outcome_of


def test_evidence_shows_mesh_pairs_nodes_changes_and_options() -> None:
    mesh = {"healthy": False, "summary": "mesh unhealthy", "problems": ["a -> b: ping failed"],
            "pairs": {"aws-cni<->cilium": {"ok": 3, "failed": ["a -> b"], "healthy": False},
                      "cilium<->cilium": {"ok": 9, "failed": [], "healthy": True}}}
    body = evidence(title="Cut over?", mesh=mesh, node_lines=["ip-1 (ng-1, aws-cni): Ready"],
                    changes=CUTOVER_CHANGES, options=[PROCEED, ROLL_BACK])
    assert "**UNHEALTHY**" in body
    assert "- aws-cni<->cilium: FAILING (3 ok, 1 failed)" in body
    assert "- cilium<->cilium: OK (9 ok, 0 failed)" in body
    assert "a -> b: ping failed" in body and "- ip-1 (ng-1, aws-cni): Ready" in body
    assert "cordon the old nodes" in body and "- **roll back**" in body


def test_evidence_without_a_mesh_verdict_says_so() -> None:
    body = evidence(title="t", mesh=None, node_lines=[], changes=[], options=[PROCEED])
    assert "no mesh verdict recorded" in body


def test_an_approval_may_not_default_to_proceed() -> None:
    from cilium_migration.operators import MigrationApprovalOperator

    with pytest.raises(ValueError, match="never default to proceed"):
        MigrationApprovalOperator(task_id="a", subject="s", options=[PROCEED, ROLL_BACK], defaults=[PROCEED],
                                  evidence_title="t", mesh_task_id="m", changes=[])


@pytest.mark.parametrize(("states", "outcome"), [
    pytest.param({"decommission.final_mesh_healthy": "success", "rollback.start": "skipped"}, "completed",
                 id="completed"),
    pytest.param({"approve_decommission.hold": "success", "rollback.start": "skipped"},
                 "held after cutover (aws-node and old node groups kept)", id="held"),
    pytest.param({"approve_cutover.rejected": "success", "rollback.start": "success",
                  "rollback.mesh_healthy": "success", "rollback.on_gate_failure": "skipped"},
                 "rolled back after rejection", id="rejected"),
    pytest.param({"cilium_nodes.new_nodes_ready": "failed", "rollback.on_gate_failure": "success",
                  "rollback.start": "success", "rollback.mesh_healthy": "success"},
                 "rolled back after failure of cilium_nodes.new_nodes_ready", id="gate-failed"),
    pytest.param({"cutover.move_workloads": "failed", "rollback.start": "success",
                  "rollback.uninstall_cilium": "failed"},
                 "failed: rollback after failure of cutover.move_workloads, rollback.uninstall_cilium did not "
                 "complete (cutover.move_workloads, rollback.uninstall_cilium)", id="rollback-failed"),
    pytest.param({"preflight.checks": "failed", "rollback.start": "skipped"}, "failed: preflight.checks",
                 id="preflight-failed"),
])
def test_outcome_of_a_run(states: dict, outcome: str) -> None:
    assert outcome_of(states) == outcome
