"""The report's FastAPI app, mounted by the api-server at ``/cilium-migration-report``.

``GET /{dag_id}/{run_id}``: the report page (the "Migration report" tab of the run shows it);
``?format=md`` or ``?format=html``: the same report as a file to download (``Content-Disposition:
attachment``). Access is Airflow's own: the caller's token (the UI's ``_token`` cookie or a Bearer
header) must allow reading the DAG's runs; the data comes through Airflow's ORM session.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import requires_access_dag
from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse, PlainTextResponse, Response

from cilium_migration.report import markdown, model, page

app = FastAPI(title="Cilium migration report", docs_url=None, redoc_url=None, openapi_url=None)
READ_RUNS = requires_access_dag("GET", DagAccessEntity.RUN)  # who may see the DAG's runs may see their reports


def filename(run_id: str, ext: str) -> str:
    """A safe file name for a run's report: ``cilium-migration-report-<run id, sanitised>.<ext>``."""
    return f"cilium-migration-report-{re.sub(r'[^A-Za-z0-9._-]+', '_', run_id)}.{ext}"


@app.get("/{dag_id}/{run_id}", dependencies=[Depends(READ_RUNS)])
def report(dag_id: str, run_id: str, session: SessionDep,
           format: Annotated[Literal["md", "html"] | None, Query()] = None) -> Response:  # noqa: A002
    found = model.gather(session, dag_id, run_id)
    if found is None:
        raise HTTPException(404, f"no run {run_id!r} of DAG {dag_id!r}")
    if format == "md":
        return PlainTextResponse(markdown.render(found), media_type="text/markdown; charset=utf-8",
                                 headers={"Content-Disposition": f'attachment; filename="{filename(run_id, "md")}"'})
    if format == "html":
        return HTMLResponse(page.render(found, downloads=False),
                            headers={"Content-Disposition": f'attachment; filename="{filename(run_id, "html")}"'})
    return HTMLResponse(page.render(found))
