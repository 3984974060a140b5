"""The Airflow plugin of the migration report: the "Migration report" tab of each run, its app, its note.

- ``fastapi_apps``: the report app (``report.app``) at ``/cilium-migration-report`` in the api-server;
- ``external_views``: a tab on each DAG run's page (destination ``dag_run``) showing
  ``/cilium-migration-report/{DAG_ID}/{RUN_ID}``;
- ``listeners``: ``report.note`` writes the run's note when the run ends.

Airflow imports this file when it loads plugins (api-server, scheduler), never while parsing the DAG.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from cilium_migration.report import model, note
from cilium_migration.report.app import app


class CiliumMigrationReportPlugin(AirflowPlugin):
    name = "cilium_migration_report"
    fastapi_apps = [{"app": app, "url_prefix": model.URL_PREFIX, "name": "Cilium migration report"}]
    external_views = [{
        "name": "Migration report",
        "href": model.URL_PREFIX + "/{DAG_ID}/{RUN_ID}",
        "destination": "dag_run",
        "url_route": model.TAB_ROUTE,
    }]
    listeners = [note]
