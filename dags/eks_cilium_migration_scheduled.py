"""Start ``eks_cilium_migration`` when a maintenance window opens (a cron trigger timetable).

Configured from the environment of the scheduler and the dag-processor (read when the file is parsed;
nothing else happens at parse time):

- ``CILIUM_MIGRATION_WINDOW_CRON``: the window's start, e.g. ``0 2 * * SUN``. Unset or empty: this DAG has
  no schedule and does nothing by itself.
- ``CILIUM_MIGRATION_WINDOW_MINUTES`` (default 120) and ``CILIUM_MIGRATION_WINDOW_TIMEZONE`` (an IANA
  name, default ``UTC``).
- ``CILIUM_MIGRATION_PARAMS``: the migration's other params as a JSON object (``cluster_name``,
  ``region``, ``old_nodegroups``, ...), passed as the triggered run's conf.

Each scheduled run triggers one run of ``eks_cilium_migration`` with those params plus the window's
(``window_cron``, ``window_minutes``, ``window_timezone``), so its disruptive steps keep to the window
and a run that outlasts it waits for the next one. The migration DAG allows one active run: a window
that opens while a run is still going queues the next. Paused when created: unpause it to arm it.

Wiring only: the window's rules are in ``plugins/cilium_migration/windows.py``.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, CronTriggerTimetable

from cilium_migration import windows
from cilium_migration.retry_policy import TASK_RETRIES

MIGRATION_DAG_ID = "eks_cilium_migration"

WINDOW, PARAMS = windows.from_environment()

with DAG(
    dag_id="eks_cilium_migration_scheduled",
    description="Trigger eks_cilium_migration at the start of each maintenance window",
    start_date=datetime(2026, 1, 1),
    schedule=CronTriggerTimetable(WINDOW.cron, timezone=WINDOW.timezone) if WINDOW else None,
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=True,  # armed only when a human unpauses it
    tags=["eks", "cilium", "cni-migration", "maintenance-window"],
    default_args={"owner": "platform", **TASK_RETRIES},
    doc_md=__doc__,
) as dag:
    TriggerDagRunOperator(
        task_id="start_migration",
        trigger_dag_id=MIGRATION_DAG_ID,
        conf={**PARAMS, **(WINDOW.to_params() if WINDOW else {})},
        fail_when_dag_is_paused=True,
    )
