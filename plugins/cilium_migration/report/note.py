"""The run's note: a short summary of the report and a link to its tab, set when the run ends.

A listener (``on_dag_run_success``/``on_dag_run_failed``) runs where Airflow changes the run's state (the
scheduler, or the api-server when someone marks the run), with the run in a database session: tasks
cannot write a note (the Task SDK has no call for it), the scheduler can. A note a human wrote is kept:
only an empty note, or one this module wrote (it starts with ``PREFIX``), is replaced. Runs of other
DAGs (no ``audit_report`` task) are left alone.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.listeners import hookimpl

from cilium_migration.report import model

PREFIX = "Cilium migration:"

log = logging.getLogger(__name__)


def summary(report: model.Report, *, base_url: str = "") -> str:
    """Outcome, counts of changes and approvals (who chose what), and a Markdown link to the tab."""
    counts = report.counts()
    answered = [f"{a.task_id.split('.', 1)[0]}: {', '.join(a.chosen)} by {a.user or '?'}"
                for a in report.approvals if a.answered]
    return (f"{PREFIX} **{report.outcome}**. {counts['changes']} change(s) by {counts['tasks']} task(s); "
            f"approvals: {'; '.join(answered) or 'none answered'}. "
            f"[Migration report]({base_url.rstrip('/')}{report.tab_path})")


def wants_note(current: str | None) -> bool:
    return not (current or "").strip() or (current or "").startswith(PREFIX)


def set_note(dag_run: Any, session: Any) -> str | None:
    """Write the summary into ``dag_run``'s note (committed with ``session``); return it, or None."""
    if not wants_note(dag_run.note):
        return None
    report = model.gather(session, dag_run.dag_id, dag_run.run_id)
    if report is None or not any(p.name == model.REPORT_TASK for p in report.phases):
        return None
    from airflow.configuration import conf

    text = summary(report, base_url=conf.get("api", "base_url", fallback="") or "")
    dag_run.note = text
    return text


def _on_end(dag_run: Any) -> None:
    try:
        from sqlalchemy.orm import object_session

        session = object_session(dag_run)
        if session is not None:
            set_note(dag_run, session)
            return
        from airflow.utils.session import create_session

        with create_session() as own:
            attached = own.merge(dag_run)
            set_note(attached, own)
    except Exception:  # a note must never break the scheduler
        log.exception("could not set the note of %s", getattr(dag_run, "run_id", dag_run))


@hookimpl
def on_dag_run_success(dag_run: Any, msg: str) -> None:
    _on_end(dag_run)


@hookimpl
def on_dag_run_failed(dag_run: Any, msg: str) -> None:
    _on_end(dag_run)
