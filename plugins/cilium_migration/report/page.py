"""The report as one self-contained HTML page (the tab's content, and the HTML download).

Everything inline (CSS, the two SVG plots), no script, every value escaped. Tables carry ids
(``approvals``, ``changes``, ``mesh-verdicts``) for the browser test.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from html import escape
from typing import Any

from cilium_migration.report import svg
from cilium_migration.report.markdown import compact, duration, target, ts, window_text
from cilium_migration.report.model import Report

STYLE = """
body{font-family:system-ui,sans-serif;font-size:14px;margin:16px;color:#222}
h1{font-size:20px}h2{font-size:16px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #ddd;padding:3px 6px;vertical-align:top;text-align:left}
th{background:#f4f4f4}code{font-size:12px;word-break:break-all}
#changes code{display:block;max-height:5.5em;overflow:auto;max-width:34em}summary{cursor:pointer;font-weight:bold}.bad{color:#b00020;font-weight:bold}
.matrices{display:flex;flex-wrap:wrap;gap:8px 24px}figure{margin:0}figcaption{font-weight:bold}
.ok{color:#1b7a43}.muted{color:#777}.downloads a{margin-right:12px}.summary td:first-child{font-weight:bold}
"""


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def _table(table_id: str, header: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    """Cells are HTML already (callers escape)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _cluster(table_id: str, cluster: Mapping[str, Any] | None) -> str:
    if not cluster:
        return '<p class="muted">(not recorded)</p>'
    parts = []
    groups = cluster.get("nodegroups") or {}
    if groups:
        parts.append(_table(f"{table_id}-nodegroups", ["node group", "min", "max", "desired"],
                            ([_e(g), _e(c.get("minSize")), _e(c.get("maxSize")), _e(c.get("desiredSize"))]
                             for g, c in sorted(groups.items()))))
    if cluster.get("nodes"):
        parts.append(_table(f"{table_id}-nodes", ["node", "node group", "CNI", "ready", "cordoned"],
                            ([_e(n.get("name")), _e(n.get("nodegroup")), _e(n.get("cni")),
                              "yes" if n.get("ready") else '<span class="bad">no</span>',
                              "yes" if n.get("cordoned") else "no"] for n in cluster["nodes"])))
    items = []
    for key, label in (("old_nodes", "nodes on the old CNI"), ("new_nodes", "nodes of the new group"),
                       ("old_nodes_cordoned", "cordoned before the run")):
        if key in cluster:
            items.append(f"<li>{_e(label)}: {_e(', '.join(cluster[key]) or 'none')}</li>")
    if "aws_node" in cluster:
        items.append(f"<li>aws-node DaemonSet: {'present' if cluster['aws_node'] not in (None, False) else 'absent'}</li>")
    items += [f"<li>could not read {_e(k[:-6])}: {_e(v)}</li>" for k, v in sorted(cluster.items()) if k.endswith("_error")]
    if items:
        parts.append("<ul>" + "".join(items) + "</ul>")
    return "".join(parts)


def render(report: Report, *, now: datetime | None = None, downloads: bool = True) -> str:
    counts = report.counts()
    bad = report.outcome.startswith(("failed", "rolled back after failure"))
    outcome_cls = "bad" if bad else "ok"
    summary = _table("summary", ["", ""], [
        ["Outcome", f'<span id="outcome" class="{outcome_cls}">{_e(report.outcome)}</span>'],
        ["Run", f"{_e(report.run_id)} ({_e(report.state)})"],
        ["Started / ended", f"{_e(ts(report.start))} / {_e(ts(report.end))} {_e(duration(report.start, report.end))}"],
        ["Window", _e(window_text(report))],
        ["Changes", f"{counts['changes']} by {counts['tasks']} task(s)"
                    + ("" if report.changes_complete else ' <span class="muted">(so far)</span>')],
        ["Approvals answered", str(counts["approvals"])],
    ])
    links = ('<p class="downloads">Download: <a id="download-md" href="?format=md">Markdown</a>'
             '<a id="download-html" href="?format=html">HTML</a></p>') if downloads else ""
    params = _table("params", ["param", "value"],
                    ([_e(k), f"<code>{_e(v if isinstance(v, str) else compact(v))}</code>"]
                     for k, v in sorted(report.params.items())))
    approvals = _table("approvals", ["gate", "try", "question", "answer", "answered by", "asked", "answered"],
                       ([_e(a.task_id), _e(a.try_number), _e(a.subject),
                         _e(", ".join(a.chosen)) if a.chosen else '<span class="muted">waiting</span>',
                         f'<span class="approver">{_e(a.user)}</span>', _e(ts(a.requested_at)), _e(ts(a.responded_at))]
                        for a in report.approvals)) if report.approvals else "<p>No approval was asked.</p>"
    changes = _table("changes", ["task", "try", "action", "target", "before", "after", "dry run", "at"],
                     ([_e(c.get("task")), _e(c.get("try", "")), _e(c.get("action")), _e(target(c)),
                       f"<code>{_e(compact(c.get('before')))}</code>", f"<code>{_e(compact(c.get('after')))}</code>",
                       "yes" if c.get("dry_run") else "no", _e(c.get("at", ""))] for c in report.changes))
    partial = "" if report.changes_complete else (
        '<p class="muted">So far: the last try of each task. Every try is listed once the audit report has run.</p>')
    verdicts = _table("mesh-verdicts", ["gate", "verdict", "failing CNI pairs", "summary"],
                      ([_e(v.task_id), '<span class="ok">healthy</span>' if v.healthy else '<span class="bad">unhealthy</span>',
                        _e(", ".join(v.failing) or "none"), _e(v.summary)] for v in report.mesh_verdicts)
                      ) if report.mesh_verdicts else "<p>No mesh gate has run.</p>"
    progress = (f"<p>Progress record: phase <code>{_e(report.progress.get('phase'))}</code> "
                f"(run {_e(report.progress.get('run_id'))})</p>") if report.progress else ""
    body = [
        f"<h1>Cilium migration report</h1>{summary}{links}"
        f"<details><summary>Parameters ({len(report.params)})</summary>{params}</details>",
        "<h2>Timeline</h2>" + svg.timeline(report.phases, report.approvals, now=now or datetime.now(UTC)),
        f"<h2>Approvals</h2>{approvals}",
        f'<h2>Changes <span class="muted">({len(report.changes)})</span></h2>{partial}{changes}',
        f"<h2>Mesh</h2>{verdicts}<h3>goldpinger mesh matrices (rows ping columns)</h3><div class=\"matrices\">"
        + f"<figure><figcaption>at the end of the run</figcaption>{svg.mesh_matrix(report.mesh_matrix)}</figure>"
        + "".join(f"<figure><figcaption>at the gate {_e(v.task_id)}</figcaption>"
                  + svg.mesh_matrix(v.matrix, svg_id=f"mesh-matrix-{v.task_id}",
                                    title=f"goldpinger mesh at {v.task_id}") + "</figure>"
                  for v in report.mesh_verdicts if v.matrix) + "</div>",
        "<h2>Cluster before (preflight snapshot)</h2>" + _cluster("before", report.before),
        "<h2>Cluster after</h2>" + _cluster("after", report.after) + progress,
    ]
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
            f"<title>Migration report {_e(report.run_id)}</title><style>{STYLE}</style></head><body>"
            + "".join(f"<section>{b}</section>" for b in body) + "</body></html>")
