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
SCHEDULED_DAG_ID = "eks_cilium_migration_scheduled"
PHASES = ["preflight", "baseline", "fence_old_cni", "cilium_nodes", "approve_cutover", "cutover",
          "approve_decommission", "decommission", "rollback"]


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


def test_the_migration_dag_is_there(dagbag: Any) -> None:
    assert DAG_ID in dagbag.dag_ids


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


def test_phases_are_taskgroups_in_runbook_order(dagbag: Any) -> None:
    dag = dagbag.dags[DAG_ID]
    groups = [g for g in dag.task_group.children if g in PHASES]
    assert groups == PHASES


def test_approvals_branch_to_the_right_tasks_and_never_default_to_proceed(dagbag: Any) -> None:
    dag = dagbag.dags[DAG_ID]
    cutover = dag.get_task("approve_cutover.approve")
    decommission = dag.get_task("approve_decommission.approve")
    assert cutover.options_mapping == {"proceed": "cutover.cordon_old_nodes",
                                       "roll back": "approve_cutover.rejected"}
    assert decommission.options_mapping["hold"] == "approve_decommission.hold"
    for gate in (cutover, decommission):
        assert "proceed" not in (gate.defaults or [])
        assert set(gate.options_mapping.values()) == gate.downstream_task_ids


def test_rollback_runs_after_any_failed_gate_or_a_rejection(dagbag: Any) -> None:
    dag = dagbag.dags[DAG_ID]
    on_failure = dag.get_task("rollback.on_gate_failure")
    start = dag.get_task("rollback.start")
    assert on_failure.trigger_rule == "one_failed"
    assert start.trigger_rule == "one_success"
    assert start.upstream_task_ids == {"rollback.on_gate_failure", "approve_cutover.rejected",
                                       "approve_decommission.rejected"}
    gates = {t.task_id for t in dag.tasks if t.task_id.split(".")[0] in
             ("baseline", "fence_old_cni", "cilium_nodes", "cutover", "decommission")}
    assert gates <= on_failure.upstream_task_ids
    # a branch skips its direct downstream tasks: nothing that must run may hang off an approval
    for gate in ("approve_cutover.approve", "approve_decommission.approve"):
        assert not dag.get_task(gate).downstream_task_ids & {"rollback.on_gate_failure", "audit_report"}


def test_audit_report_runs_whatever_happened(dagbag: Any) -> None:
    dag = dagbag.dags[DAG_ID]
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
