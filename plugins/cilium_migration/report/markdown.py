"""The report as Markdown (the download, and the text the note summarises).

Section by section as on the page: parameters and window, timeline, approvals, changes, mesh, cluster
before and after. Table cells are escaped (``|`` and newlines), JSON is compact.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from cilium_migration.report.model import Report

MATRIX_SYMBOLS = {"ok": "✓", "failed": "✗", "missing": "·"}


def ts(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value else ""


def duration(start: datetime | None, end: datetime | None) -> str:
    if not start or not end:
        return ""
    secs = int((end - start).total_seconds())
    return f"{secs // 60}m{secs % 60:02d}s"


def compact(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))


def target(change: Mapping[str, Any]) -> str:
    ns, name = change.get("namespace"), change.get("name")
    return f"{change.get('kind')} {ns}/{name}" if ns else f"{change.get('kind')} {name}"


def _cell(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _table(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> list[str]:
    head = list(header)
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return out


def window_text(report: Report) -> str:
    w = report.window
    if not w.get("window_cron"):
        return "none: the disruptive steps could run at any time"
    return f"{w['window_cron']} ({w.get('window_timezone', 'UTC')}), {w.get('window_minutes')} minutes"


def cluster_lines(cluster: Mapping[str, Any] | None) -> list[str]:
    """Node groups and nodes of a cluster summary (the preflight snapshot or the cluster after)."""
    if not cluster:
        return ["(not recorded)"]
    out = []
    groups = cluster.get("nodegroups") or {}
    if groups:
        out += _table(["node group", "min", "max", "desired"],
                      ([g, c.get("minSize", ""), c.get("maxSize", ""), c.get("desiredSize", "")]
                       for g, c in sorted(groups.items())))
        out.append("")
    if cluster.get("nodes"):
        out += _table(["node", "node group", "CNI", "ready", "cordoned"],
                      ([n.get("name"), n.get("nodegroup") or "", n.get("cni"), "yes" if n.get("ready") else "no",
                        "yes" if n.get("cordoned") else "no"] for n in cluster["nodes"]))
        out.append("")
    for key, label in (("old_nodes", "nodes on the old CNI"), ("new_nodes", "nodes of the new group"),
                       ("old_nodes_cordoned", "cordoned before the run")):
        if key in cluster:
            out.append(f"- {label}: {', '.join(cluster[key]) or 'none'}")
    if "aws_node" in cluster:
        present = cluster["aws_node"] not in (None, False)
        out.append(f"- aws-node DaemonSet: {'present' if present else 'absent'}")
    for key in sorted(k for k in cluster if k.endswith("_error")):
        out.append(f"- could not read {key[:-6]}: {cluster[key]}")
    return out or ["(empty)"]


def render(report: Report) -> str:
    counts = report.counts()
    lines = [f"# Cilium migration report: {report.run_id}", "",
             f"- **Outcome:** {report.outcome}", f"- **Run state:** {report.state}",
             f"- **DAG:** {report.dag_id}",
             f"- **Started:** {ts(report.start)}  **Ended:** {ts(report.end)} ({duration(report.start, report.end)})",
             f"- **Changes:** {counts['changes']} by {counts['tasks']} task(s); "
             f"**approvals answered:** {counts['approvals']}",
             f"- **Window:** {window_text(report)}", ""]
    lines += ["## Parameters", ""]
    lines += _table(["param", "value"], ([k, compact(v) if not isinstance(v, str) else v]
                                         for k, v in sorted(report.params.items())))
    lines += ["", "## Timeline", ""]
    lines += _table(["phase", "state", "start", "end", "duration", "task tries"],
                    ([p.name, p.state, ts(p.start), ts(p.end), duration(p.start, p.end), p.tries]
                     for p in report.phases))
    lines += ["", "## Approvals", ""]
    if report.approvals:
        lines += _table(["gate", "try", "question", "answer", "answered by", "asked", "answered"],
                        ([a.task_id, a.try_number, a.subject, ", ".join(a.chosen) or "(waiting)", a.user or "",
                          ts(a.requested_at), ts(a.responded_at)] for a in report.approvals))
    else:
        lines.append("No approval was asked.")
    lines += ["", "## Changes", ""]
    if not report.changes_complete:
        lines += ["(so far: the last try of each task; every try's changes are listed once the audit report "
                  "has run)", ""]
    lines += _table(["task", "try", "action", "target", "before", "after", "dry run", "at"],
                    ([c.get("task"), c.get("try", ""), c.get("action"), target(c), f"`{compact(c.get('before'))}`",
                      f"`{compact(c.get('after'))}`", "yes" if c.get("dry_run") else "no", c.get("at", "")]
                     for c in report.changes))
    lines += ["", f"{len(report.changes)} change(s).", "", "## Mesh", ""]
    if report.mesh_verdicts:
        lines += _table(["gate", "verdict", "failing CNI pairs", "summary"],
                        ([v.task_id, "healthy" if v.healthy else "UNHEALTHY", ", ".join(v.failing) or "none",
                          v.summary] for v in report.mesh_verdicts))
    else:
        lines.append("No mesh gate has run.")
    lines += ["", "### goldpinger mesh matrix (at the end of the run; rows ping columns)", ""]
    lines += matrix_lines(report.mesh_matrix)
    for v in report.mesh_verdicts:
        if v.matrix:
            lines += ["", f"### goldpinger mesh matrix at the gate {v.task_id}", "", *matrix_lines(v.matrix)]
    lines += ["", "## Cluster before (preflight snapshot)", ""] + cluster_lines(report.before)
    lines += ["", "## Cluster after", ""] + cluster_lines(report.after)
    if report.progress:
        lines += ["", f"Progress record: phase `{report.progress.get('phase')}` (run {report.progress.get('run_id')})"]
    return "\n".join(lines) + "\n"


def matrix_lines(matrix: Mapping[str, Any] | None) -> list[str]:
    nodes = list((matrix or {}).get("nodes") or [])
    if not nodes:
        return [f"({(matrix or {}).get('error') or 'no goldpinger results'})"]
    results = (matrix or {}).get("results") or {}
    header = ["from \\ to", *(f"{n['name']} ({n['cni']})" for n in nodes)]
    rows = ([f"{src['name']} ({src['cni']})",
             *(MATRIX_SYMBOLS.get((results.get(src["name"]) or {}).get(dst["name"], "missing"), "?") for dst in nodes)]
            for src in nodes)
    return [*_table(header, rows), "", "✓ ping OK, ✗ ping failed, · no result"]
