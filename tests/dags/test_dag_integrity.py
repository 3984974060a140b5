"""DAG integrity: every DAG file parses without connections or network, and follows the team's rules
(tags, owner, retries >= 2 on every task, static start, no schedule unless configured, phases as
TaskGroups, rollback wiring); the scheduled DAG starts the migration at its maintenance window.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"
DAG_ID = "eks_cilium_migration"
IN_PLACE_DAG_ID = "eks_cilium_migration_in_place"
SCHEDULED_DAG_ID = "eks_cilium_migration_scheduled"
# per migration DAG: its phases in runbook order, its gates (first: proceed's target), its forward phases
SHAPES: dict[str, dict[str, Any]] = {
    DAG_ID: {
        "phases": ["preflight", "baseline", "fence_old_cni", "cilium_nodes", "approve_cutover", "cutover",
                   "approve_decommission", "decommission", "rollback"],
        "gates": {"approve_cutover.approve": "cutover.cordon_old_nodes",
                  "approve_decommission.approve": "decommission.delete_aws_node"},
        "forward": ("baseline", "fence_old_cni", "cilium_nodes", "cutover", "decommission"),
    },
    IN_PLACE_DAG_ID: {
        "phases": ["preflight", "baseline", "cilium_beside", "approve_restarts", "restart_pods", "approve_removal",
                   "remove_old_cni", "rollback"],
        "gates": {"approve_restarts.approve": "restart_pods.restart_workloads",
                  "approve_removal.approve": "remove_old_cni.delete_aws_node"},
        "forward": ("baseline", "cilium_beside", "restart_pods", "remove_old_cni"),
    },
}
MIGRATION_DAGS = pytest.mark.parametrize("dag_id", list(SHAPES))


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("a DAG touched a connection or variable at parse time")


@pytest.fixture(scope="module")
def dagbag() -> Iterator[Any]:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import BaseHook, Variable
    from airflow.sdk.definitions.connection import Connection

    mp = pytest.MonkeyPatch()
    for target, name in [(BaseHook, "get_connection"), (Connection, "get"), (Variable, "get")]:
        mp.setattr(target, name, _refuse)
    mp.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    try:
        yield DagBag(dag_folder=str(DAGS))
    finally:
        mp.undo()


def test_no_import_errors(dagbag: Any) -> None:
    assert dagbag.import_errors == {}, dagbag.import_errors


def test_both_strategies_have_their_dag(dagbag: Any) -> None:
    assert {DAG_ID, IN_PLACE_DAG_ID} <= set(dagbag.dag_ids)
    assert dagbag.dags[DAG_ID].params["strategy"] == "node-pool"
    assert dagbag.dags[IN_PLACE_DAG_ID].params["strategy"] == "in-place"


def test_every_dag_has_tags_owner_static_start_and_no_schedule(dagbag: Any) -> None:
    """No schedule: the scheduled DAG has one only when its window is configured (not here)."""
    assert SCHEDULED_DAG_ID in dagbag.dag_ids
    for dag in dagbag.dags.values():
        assert dag.tags, dag.dag_id
        assert dag.default_args.get("owner") not in (None, "", "airflow"), dag.dag_id
        assert dag.start_date is not None and dag.schedule is None and dag.catchup is False


def test_every_task_retries_at_least_twice(dagbag: Any) -> None:
    few = [f"{d.dag_id}.{t.task_id}" for d in dagbag.dags.values() for t in d.tasks if (t.retries or 0) < 2]
    assert few == []


def test_every_task_backs_off_and_fails_permanent_errors_at_once(dagbag: Any) -> None:
    from cilium_migration.retry_policy import MigrationRetryPolicy

    for dag in dagbag.dags.values():
        for task in dag.tasks:
            where = f"{dag.dag_id}.{task.task_id}"
            assert task.retry_exponential_backoff >= 2, where
            assert task.max_retry_delay is not None and task.max_retry_delay >= task.retry_delay, where
            assert isinstance(task.retry_policy, MigrationRetryPolicy), where


@MIGRATION_DAGS
def test_phases_are_taskgroups_in_runbook_order(dagbag: Any, dag_id: str) -> None:
    phases = SHAPES[dag_id]["phases"]
    groups = [g for g in dagbag.dags[dag_id].task_group.children if g in phases]
    assert groups == phases


@MIGRATION_DAGS
def test_approvals_branch_to_the_right_tasks_and_never_default_to_proceed(dagbag: Any, dag_id: str) -> None:
    dag = dagbag.dags[dag_id]
    (first, first_target), (second, second_target) = SHAPES[dag_id]["gates"].items()
    gate_one, gate_two = dag.get_task(first), dag.get_task(second)
    group_one, group_two = first.split(".")[0], second.split(".")[0]
    assert gate_one.options_mapping == {"proceed": first_target, "roll back": f"{group_one}.rejected"}
    assert gate_two.options_mapping == {"proceed": second_target, "hold": f"{group_two}.hold",
                                        "roll back": f"{group_two}.rejected"}
    for gate in (gate_one, gate_two):
        assert "proceed" not in (gate.defaults or [])
        assert set(gate.options_mapping.values()) == gate.downstream_task_ids


@MIGRATION_DAGS
def test_rollback_runs_after_any_failed_gate_or_a_rejection(dagbag: Any, dag_id: str) -> None:
    dag = dagbag.dags[dag_id]
    on_failure = dag.get_task("rollback.on_gate_failure")
    start = dag.get_task("rollback.start")
    assert on_failure.trigger_rule == "one_failed"
    assert start.trigger_rule == "one_success"
    approvals = [g.split(".")[0] for g in SHAPES[dag_id]["gates"]]
    assert start.upstream_task_ids == {"rollback.on_gate_failure", *(f"{g}.rejected" for g in approvals)}
    gates = {t.task_id for t in dag.tasks if t.task_id.split(".")[0] in SHAPES[dag_id]["forward"]}
    assert gates <= on_failure.upstream_task_ids
    # a branch skips its direct downstream tasks: nothing that must run may hang off an approval
    for gate in SHAPES[dag_id]["gates"]:
        assert not dag.get_task(gate).downstream_task_ids & {"rollback.on_gate_failure", "audit_report"}


@MIGRATION_DAGS
def test_audit_report_runs_whatever_happened(dagbag: Any, dag_id: str) -> None:
    dag = dagbag.dags[dag_id]
    report = dag.get_task("audit_report")
    assert report.trigger_rule == "all_done"
    assert report.downstream_task_ids == set()
    assert len(report.upstream_task_ids) == len(dag.tasks) - 3  # all but itself and the two approvals


def test_the_scheduled_dag_has_no_schedule_unless_configured_and_is_paused_at_creation(dagbag: Any) -> None:
    dag = dagbag.dags[SCHEDULED_DAG_ID]
    assert dag.schedule is None and dag.is_paused_upon_creation is True
    (task,) = dag.tasks
    assert task.trigger_dag_id == DAG_ID and task.conf == {}


def test_the_scheduled_dag_triggers_the_migration_at_each_window(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import CronTriggerTimetable

    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    monkeypatch.setenv("CILIUM_MIGRATION_WINDOW_CRON", "0 2 * * SUN")
    monkeypatch.setenv("CILIUM_MIGRATION_WINDOW_MINUTES", "90")
    monkeypatch.setenv("CILIUM_MIGRATION_WINDOW_TIMEZONE", "Europe/Paris")
    monkeypatch.setenv("CILIUM_MIGRATION_PARAMS", '{"cluster_name": "prod", "region": "eu-west-3"}')
    bag = DagBag(dag_folder=str(DAGS / f"{SCHEDULED_DAG_ID}.py"))
    assert bag.import_errors == {}
    dag = bag.dags[SCHEDULED_DAG_ID]
    assert isinstance(dag.timetable, CronTriggerTimetable)
    assert dag.timetable.expression == "0 2 * * SUN" and str(dag.timetable.timezone) == "Europe/Paris"
    assert dag.is_paused_upon_creation is True and dag.catchup is False
    (task,) = dag.tasks
    assert task.conf == {"cluster_name": "prod", "region": "eu-west-3", "window_cron": "0 2 * * SUN",
                         "window_minutes": 90, "window_timezone": "Europe/Paris"}


def test_a_bad_window_in_the_environment_is_an_import_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    monkeypatch.setenv("CILIUM_MIGRATION_WINDOW_CRON", "0 2 * * SUN")
    monkeypatch.setenv("CILIUM_MIGRATION_WINDOW_TIMEZONE", "Europe/Pariss")
    bag = DagBag(dag_folder=str(DAGS / f"{SCHEDULED_DAG_ID}.py"))
    (error,) = bag.import_errors.values()
    assert "CILIUM_MIGRATION_WINDOW_TIMEZONE" in error and "Europe/Pariss" in error


def test_parsing_imports_no_heavy_client_libraries() -> None:
    """kubernetes and boto3 load only inside tasks (checked in a fresh interpreter)."""
    import subprocess

    code = ("import sys, runpy; sys.path.insert(0, 'plugins'); runpy.run_path('dags/eks_cilium_migration.py'); "
            "runpy.run_path('dags/eks_cilium_migration_scheduled.py'); "
            "print(sorted(m for m in ('kubernetes', 'boto3', 'botocore', 'helm_python') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=DAGS.parent, env={**os.environ, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})
    assert out.stdout.strip().splitlines()[-1] == "[]"
