"""The report of one run: what the ``audit_report`` task stored (XCom ``report``) and what Airflow's
metadata database holds (task tries, approvals, mesh verdicts, params).

``build`` is pure (plain rows in, ``Report`` out: what the renderers and the tests use); ``gather`` reads
the rows of one run through Airflow's ORM, in the api-server (or the scheduler, for the note). A run
still going has no ``report`` XCom yet: its changes then come from each task's ``changes`` XCom (the last
try of each task), and the cluster after is left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

REPORT_TASK = "audit_report"
REPORT_KEY = "report"
CHANGES_KEY = "changes"
MESH_KEY = "mesh"
SNAPSHOT_TASK = "preflight.snapshot"
TAB_ROUTE = "migration-report"  # the external view's url_route: the run page's tab is plugin/<it>
URL_PREFIX = "/cilium-migration-report"  # where the api-server mounts the report app

FINISHED = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})


@dataclass(frozen=True)
class TaskTry:
    task_id: str
    try_number: int
    state: str | None
    start: datetime | None
    end: datetime | None

    @property
    def phase(self) -> str:
        return self.task_id.split(".", 1)[0]


@dataclass(frozen=True)
class Phase:
    """A TaskGroup's span: from its first try's start to its last try's end (``end`` None: going on)."""

    name: str
    start: datetime | None
    end: datetime | None
    state: str  # success, failed, running, skipped, waiting
    tries: int  # task tries started in it


@dataclass(frozen=True)
class Approval:
    task_id: str
    try_number: int
    subject: str
    options: list[str]
    chosen: list[str]
    user: str | None  # responded_by_user: the name (id) of who answered; None while waiting
    requested_at: datetime | None
    responded_at: datetime | None

    @property
    def answered(self) -> bool:
        return self.responded_at is not None


@dataclass(frozen=True)
class MeshVerdict:
    task_id: str
    healthy: bool
    summary: str
    failing: list[str]
    matrix: dict[str, Any] | None = None  # node by node, as ``collect.mesh_matrix`` (when the gate kept one)


def node_matrix(data: Any) -> dict[str, Any] | None:
    """A mesh verdict's ``node_matrix`` (nodes, their CNIs, ok and failed ping counts per node pair) as
    the report's matrix: ``results[src][dst]`` is ``failed`` when a ping failed, ``ok`` when some passed,
    else ``missing``. None when the verdict has none (or not in that shape)."""
    try:
        names, cnis, ok, failed = (list(data[k]) for k in ("nodes", "cnis", "ok", "failed"))
        results = {src: {dst: "failed" if failed[i][j] else "ok" if ok[i][j] else "missing"
                         for j, dst in enumerate(names)} for i, src in enumerate(names)}
        return {"nodes": [{"name": n, "cni": c} for n, c in zip(names, cnis, strict=True)], "results": results}
    except (KeyError, TypeError, IndexError, ValueError):
        return None


@dataclass
class Report:
    dag_id: str
    run_id: str
    state: str | None
    outcome: str
    params: dict[str, Any]
    start: datetime | None
    end: datetime | None
    phases: list[Phase] = field(default_factory=list)
    approvals: list[Approval] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)
    changes_complete: bool = False  # True: every try's changes (the ledger); False: last tries so far
    mesh_verdicts: list[MeshVerdict] = field(default_factory=list)
    mesh_matrix: dict[str, Any] | None = None
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    progress: dict[str, Any] | None = None

    @property
    def window(self) -> dict[str, Any]:
        """The maintenance window params (``window_*``); an empty ``window_cron`` means none."""
        return {k: v for k, v in sorted(self.params.items()) if k.startswith("window_")}

    @property
    def tab_path(self) -> str:
        """The run page's "Migration report" tab (relative to the UI's base URL)."""
        from urllib.parse import quote

        return f"/dags/{quote(self.dag_id, safe='')}/runs/{quote(self.run_id, safe='')}/plugin/{TAB_ROUTE}"

    @property
    def app_path(self) -> str:
        from urllib.parse import quote

        return f"{URL_PREFIX}/{quote(self.dag_id, safe='')}/{quote(self.run_id, safe='')}"

    def counts(self) -> dict[str, int]:
        return {"changes": len(self.changes), "tasks": len({c.get("task") for c in self.changes}),
                "approvals": sum(1 for a in self.approvals if a.answered)}


def when(value: Any) -> datetime | None:
    """A timestamp from the database (aware or naive UTC datetime) or XCom (ISO text)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def phases_of(tries: Iterable[TaskTry]) -> list[Phase]:
    """One ``Phase`` per TaskGroup (a top-level task is its own), in the order they started."""
    by_phase: dict[str, list[TaskTry]] = {}
    for t in tries:
        by_phase.setdefault(t.phase, []).append(t)
    out = []
    for name, group in by_phase.items():
        starts = [t.start for t in group if t.start]
        ends = [t.end for t in group if t.end]
        states = {t.state for t in group}
        going = any(t.start and not t.end for t in group) or any(s not in FINISHED for s in states if s)
        if "failed" in states or "upstream_failed" in states:
            state = "failed"
        elif states <= {"skipped", "removed"}:
            state = "skipped"
        elif going and starts:
            state = "running"
        elif not starts:
            state = "waiting"
        else:
            state = "success"
        out.append(Phase(name, min(starts) if starts else None,
                         None if going or not ends else max(ends), state, len(starts)))
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(out, key=lambda p: (p.start or far, p.name))


def _latest(xcoms: Iterable[Mapping[str, Any]], task_id: str, key: str) -> Any:
    for x in xcoms:
        if x.get("task_id") == task_id and x.get("key") == key:
            return x.get("value")
    return None


def build(*, run: Mapping[str, Any], tries: Iterable[Mapping[str, Any]], hitl: Iterable[Mapping[str, Any]],
          xcoms: Iterable[Mapping[str, Any]], task_order: Iterable[str] = ()) -> Report:
    """The report from plain rows. ``run``: dag_id, run_id, state, start_date, end_date, conf. ``tries``:
    task_id, try_number, state, start_date, end_date (every try). ``hitl``: task_id, try_number, subject,
    options, chosen_options, responded_by ({id, name}), created_at, responded_at. ``xcoms``: task_id,
    key, value."""
    xcoms = list(xcoms)
    stored = _latest(xcoms, REPORT_TASK, REPORT_KEY)
    stored = stored if isinstance(stored, dict) else {}
    task_tries = [TaskTry(str(t["task_id"]), int(t.get("try_number") or 0), t.get("state"),
                          when(t.get("start_date")), when(t.get("end_date"))) for t in tries]
    approvals = sorted(
        (Approval(str(h["task_id"]), int(h.get("try_number") or 0), str(h.get("subject") or ""),
                  [str(o) for o in h.get("options") or []], [str(o) for o in h.get("chosen_options") or []],
                  _user(h.get("responded_by")), when(h.get("created_at")), when(h.get("responded_at")))
         for h in hitl),
        key=lambda a: (a.requested_at or datetime.max.replace(tzinfo=UTC), a.task_id, a.try_number))
    if "changes" in stored:
        changes, complete = [dict(c) for c in stored["changes"]], True
    else:
        order = {t: i for i, t in enumerate(task_order)}
        per_task = sorted((x for x in xcoms if x.get("key") == CHANGES_KEY and x.get("value")),
                          key=lambda x: (order.get(str(x["task_id"]), len(order)), str(x["task_id"])))
        changes = [{"task": x["task_id"], **dict(r)} for x in per_task for r in x["value"]]
        complete = False
    verdicts = [MeshVerdict(str(x["task_id"]), bool(x["value"].get("healthy")), str(x["value"].get("summary") or ""),
                            [p for p, v in sorted((x["value"].get("pairs") or {}).items())
                             if not (v or {}).get("healthy", True)], node_matrix(x["value"].get("node_matrix")))
                for x in xcoms if x.get("key") == MESH_KEY and isinstance(x.get("value"), dict)]
    order = {t: i for i, t in enumerate(task_order)}
    verdicts.sort(key=lambda v: (order.get(v.task_id, len(order)), v.task_id))
    snapshot = _latest(xcoms, SNAPSHOT_TASK, "return_value")
    params = stored.get("params") if isinstance(stored.get("params"), dict) else dict(run.get("conf") or {})
    return Report(
        dag_id=str(run["dag_id"]), run_id=str(run["run_id"]), state=run.get("state"),
        outcome=str(stored.get("outcome") or _outcome_so_far(run.get("state"), task_tries)),
        params=dict(params or {}), start=when(run.get("start_date")), end=when(run.get("end_date")),
        phases=phases_of(task_tries), approvals=approvals, changes=changes, changes_complete=complete,
        mesh_verdicts=verdicts, mesh_matrix=stored.get("mesh_matrix"),
        before=snapshot if isinstance(snapshot, dict) else None, after=stored.get("cluster_after"),
        progress=stored.get("progress"),
    )


def _user(responded_by: Any) -> str | None:
    if not isinstance(responded_by, Mapping):
        return None
    name, uid = responded_by.get("name"), responded_by.get("id")
    return str(name if name == uid or not uid else f"{name} ({uid})") if name or uid else None


def _outcome_so_far(state: Any, tries: list[TaskTry]) -> str:
    if state in ("queued", "running", None):
        return "in progress"
    return f"run {state} (no audit report)"


# ---- from Airflow's metadata database ------------------------------------------------------------------


def gather(session: Any, dag_id: str, run_id: str) -> Report | None:
    """The report of ``dag_id``/``run_id`` read through Airflow's ORM; None when there is no such run."""
    from airflow.models.dagrun import DagRun
    from airflow.models.hitl import HITLDetail
    from airflow.models.hitl_history import HITLDetailHistory
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.taskinstancehistory import TaskInstanceHistory
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
    if run is None:
        return None
    tis = list(session.scalars(select(TaskInstance).where(TaskInstance.dag_id == dag_id,
                                                          TaskInstance.run_id == run_id)))
    history = list(session.scalars(select(TaskInstanceHistory).where(
        TaskInstanceHistory.dag_id == dag_id, TaskInstanceHistory.run_id == run_id)))

    def row(t: Any) -> dict[str, Any]:
        return {"task_id": t.task_id, "try_number": t.try_number, "state": t.state, "start_date": t.start_date,
                "end_date": t.end_date}

    tries = [row(t) for t in history] + [row(t) for t in tis if t.try_number or t.start_date]
    tries += [row(t) for t in tis if not (t.try_number or t.start_date)]
    ti_by_id = {t.id: t for t in tis}
    tih_by_id = {t.task_instance_id: t for t in history}
    hitl = []
    for detail, owner in [*((d, ti_by_id.get(d.ti_id)) for d in session.scalars(
                              select(HITLDetail).where(HITLDetail.ti_id.in_(list(ti_by_id) or [None])))),
                          *((d, tih_by_id.get(d.ti_history_id)) for d in session.scalars(
                              select(HITLDetailHistory).where(
                                  HITLDetailHistory.ti_history_id.in_(list(tih_by_id) or [None]))))]:
        if owner is None:
            continue
        hitl.append({"task_id": owner.task_id, "try_number": owner.try_number, "subject": detail.subject,
                     "options": detail.options, "chosen_options": detail.chosen_options,
                     "responded_by": detail.responded_by, "created_at": detail.created_at,
                     "responded_at": detail.responded_at})
    rows = session.scalars(select(XComModel).where(
        XComModel.dag_id == dag_id, XComModel.run_id == run_id,
        XComModel.key.in_([REPORT_KEY, CHANGES_KEY, MESH_KEY, "return_value"])))
    xcoms = [{"task_id": x.task_id, "key": x.key, "value": XComModel.deserialize_value(x)} for x in rows
             if x.key != "return_value" or x.task_id == SNAPSHOT_TASK]
    order = sorted({t.task_id: (t.start_date or datetime.max.replace(tzinfo=UTC), t.task_id) for t in tis}.items(),
                   key=lambda kv: kv[1])
    return build(run={"dag_id": run.dag_id, "run_id": run.run_id, "state": run.state,
                      "start_date": run.start_date, "end_date": run.end_date, "conf": run.conf},
                 tries=tries, hitl=hitl, xcoms=xcoms, task_order=[t for t, _ in order])
