"""The report's app, its plugin and the run's note.

- ``GET /{dag_id}/{run_id}`` is the page; ``?format=md|html`` a download (``Content-Disposition:
  attachment`` with a safe file name); an unknown run is 404;
- the plugin adds the app under ``/cilium-migration-report`` and a ``dag_run`` tab whose href holds
  ``{DAG_ID}`` and ``{RUN_ID}``; Airflow's plugin scan finds ``ui_plugin.py`` and skips the report package
  (Airflow would import its files by bare name: ``page``, ``markdown``...);
- the DAG file imports nothing of the report (parse time stays light);
- the note: outcome, counts, who approved what, a link to the tab; a human's note is kept.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cilium_migration.report import app as app_module
from cilium_migration.report import model, note
from tests.unit.test_report_model import sample_report

ROOT = Path(__file__).resolve().parents[2]
RUN_ID = "manual__2026-12-03T10:00:00+00:00"


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    from airflow.api_fastapi.common.db.common import _get_session

    def gather(session: Any, dag_id: str, run_id: str) -> model.Report | None:
        return sample_report() if (dag_id, run_id) == ("eks_cilium_migration", RUN_ID) else None

    monkeypatch.setattr(model, "gather", gather)
    app = app_module.app
    app.dependency_overrides[app_module.READ_RUNS] = lambda: None
    app.dependency_overrides[_get_session] = lambda: None
    try:
        yield TestClient(app)
    finally:
        app.dependency_overrides.clear()


def test_the_page_and_both_downloads(client: TestClient) -> None:
    url = "/eks_cilium_migration/manual__2026-12-03T10%3A00%3A00%2B00%3A00"
    page = client.get(url)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<svg id="timeline"' in page.text and "content-disposition" not in page.headers
    md = client.get(url, params={"format": "md"})
    assert md.status_code == 200 and md.headers["content-type"].startswith("text/markdown")
    assert md.headers["content-disposition"] == \
        'attachment; filename="cilium-migration-report-manual__2026-12-03T10_00_00_00_00.md"'
    assert md.text.startswith(f"# Cilium migration report: {RUN_ID}")
    html = client.get(url, params={"format": "html"})
    assert html.headers["content-disposition"].endswith('.html"') and "<svg" in html.text
    assert "?format=md" not in html.text  # the downloaded file links to nothing
    assert client.get(url, params={"format": "pdf"}).status_code == 422


def test_an_unknown_run_is_404(client: TestClient) -> None:
    assert client.get("/eks_cilium_migration/nope").status_code == 404


def test_the_plugin_adds_the_app_and_a_run_tab() -> None:
    from cilium_migration.ui_plugin import CiliumMigrationReportPlugin

    (fastapi_app,) = CiliumMigrationReportPlugin.fastapi_apps
    assert fastapi_app["url_prefix"] == "/cilium-migration-report" and fastapi_app["app"] is app_module.app
    (view,) = CiliumMigrationReportPlugin.external_views
    assert view == {"name": "Migration report", "href": "/cilium-migration-report/{DAG_ID}/{RUN_ID}",
                    "destination": "dag_run", "url_route": "migration-report"}
    assert CiliumMigrationReportPlugin.listeners == [note]


def test_airflow_finds_the_plugin_file_and_skips_the_package() -> None:
    from airflow._shared.module_loading import find_path_from_directory

    files = {Path(p).relative_to(ROOT / "plugins").as_posix()
             for p in find_path_from_directory(str(ROOT / "plugins"), ".airflowignore", "glob")}
    assert "cilium_migration/ui_plugin.py" in files
    assert not [f for f in files if f.startswith("cilium_migration/report/")]


def test_the_dag_file_imports_nothing_of_the_report() -> None:
    for dag_file in (ROOT / "dags").glob("*.py"):
        tree = ast.parse(dag_file.read_text())
        imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module] + \
                   [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        assert not [m for m in imported if "report" in m or "ui_plugin" in m], dag_file


def test_the_note_summarises_and_links_to_the_tab() -> None:
    text = note.summary(sample_report(), base_url="http://airflow:8080/")
    assert text == ("Cilium migration: **completed**. 3 change(s) by 2 task(s); approvals: approve_cutover: "
                    "proceed by alice. [Migration report](http://airflow:8080/dags/eks_cilium_migration/runs/"
                    "manual__2026-12-03T10%3A00%3A00%2B00%3A00/plugin/migration-report)")


@pytest.mark.parametrize(("current", "replaced"), [(None, True), ("", True), ("Cilium migration: **in progress**", True),
                                                   ("rolled back by Bob: see ticket 42", False)])
def test_a_humans_note_is_kept(current: str | None, replaced: bool) -> None:
    assert note.wants_note(current) is replaced


def test_set_note_writes_only_for_runs_with_an_audit_report(monkeypatch: pytest.MonkeyPatch) -> None:
    class Run:
        dag_id, run_id, note = "eks_cilium_migration", RUN_ID, None

    monkeypatch.setattr(model, "gather", lambda session, dag_id, run_id: sample_report())
    run = Run()
    assert note.set_note(run, session=None) == run.note and str(run.note).startswith("Cilium migration: **completed**")
    other = sample_report()
    other.phases = [p for p in other.phases if p.name != model.REPORT_TASK]
    monkeypatch.setattr(model, "gather", lambda session, dag_id, run_id: other)
    run = Run()
    assert note.set_note(run, session=None) is None and run.note is None
