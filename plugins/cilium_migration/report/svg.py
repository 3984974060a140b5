"""The report's two plots as inline SVG, written by hand: the timeline of the phases, and goldpinger's mesh
matrix (nodes x nodes, grouped by CNI, each cell coloured by its ping's result).

Every text is escaped; each plot is one ``<svg>`` element with an ``id`` (``timeline``, ``mesh-matrix``)
and a ``<title>``, so a browser test and a screen reader can find it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from html import escape
from typing import Any

from cilium_migration.report.model import Approval, Phase

STATE_COLOURS = {"success": "#2e9e5b", "failed": "#d64545", "running": "#3b82f6", "waiting": "#c4c4c4",
                 "skipped": "#e5e5e5"}
RESULT_COLOURS = {"ok": "#2e9e5b", "failed": "#d64545", "missing": "#bdbdbd"}
CNI_COLOURS = {"aws-cni": "#ff9900", "cilium": "#8061a9"}

_FONT = 'font-family="sans-serif" font-size="12"'


def _x(t: datetime, start: datetime, span: float, left: int, width: int) -> float:
    return left + width * max(0.0, (t - start).total_seconds()) / span


def timeline(phases: Sequence[Phase], approvals: Sequence[Approval] = (), *, now: datetime | None = None,
             width: int = 900) -> str:
    """One row per phase, a bar from its start to its end (to ``now`` while it goes on), coloured by its
    state; each answered approval is a diamond at the time it was answered."""
    shown = [p for p in phases if p.start and p.state != "skipped"]
    label_w, row_h, top = 190, 22, 24
    height = top + row_h * max(1, len(phases)) + 30
    out = [f'<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img">', "<title>Timeline of the phases</title>"]
    if not shown:
        out.append(f'<text x="10" y="{top + 14}" {_FONT}>no phase has started yet</text></svg>')
        return "".join(out)
    start = min(p.start for p in shown if p.start)
    ends = [p.end for p in shown if p.end] + [a.responded_at for a in approvals if a.responded_at]
    end = max([*ends, *([now] if now and any(p.end is None for p in shown) else [])] or [start])
    span = max((end - start).total_seconds(), 1.0)
    plot_w = width - label_w - 20
    for i in range(5):  # time axis: minutes:seconds since the first start
        x = label_w + plot_w * i / 4
        secs = span * i / 4
        out.append(f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{height - 24}" stroke="#ddd"/>')
        out.append(f'<text x="{x:.1f}" y="{height - 8}" text-anchor="middle" {_FONT}>'
                   f'+{int(secs // 60)}:{int(secs % 60):02d}</text>')
    for row, phase in enumerate(phases):
        y = top + row * row_h
        out.append(f'<text x="{label_w - 8}" y="{y + 14}" text-anchor="end" {_FONT}>{escape(phase.name)}</text>')
        if not phase.start or phase.state == "skipped":
            out.append(f'<text x="{label_w + 4}" y="{y + 14}" {_FONT} fill="#888">{escape(phase.state)}</text>')
            continue
        x0 = _x(phase.start, start, span, label_w, plot_w)
        x1 = _x(phase.end or end, start, span, label_w, plot_w)
        colour = STATE_COLOURS.get(phase.state, "#999")
        out.append(f'<rect class="phase {escape(phase.state)}" x="{x0:.1f}" y="{y + 3}" '
                   f'width="{max(x1 - x0, 2):.1f}" height="{row_h - 6}" fill="{colour}" rx="3">'
                   f'<title>{escape(phase.name)}: {escape(phase.state)}, {(phase.end or end) - phase.start}'
                   f'</title></rect>')
        for a in approvals:
            if a.responded_at and a.task_id.split(".", 1)[0] == phase.name:
                ax = _x(a.responded_at, start, span, label_w, plot_w)
                cy = y + row_h / 2
                out.append(f'<polygon points="{ax:.1f},{cy - 7:.1f} {ax + 7:.1f},{cy:.1f} {ax:.1f},{cy + 7:.1f} '
                           f'{ax - 7:.1f},{cy:.1f}" fill="#222"><title>{escape(a.task_id)}: '
                           f'{escape(", ".join(a.chosen))} by {escape(a.user or "?")}</title></polygon>')
    out.append("</svg>")
    return "".join(out)


def mesh_matrix(matrix: Mapping[str, Any] | None, *, cell: int = 26, svg_id: str = "mesh-matrix",
                title: str = "goldpinger mesh matrix") -> str:
    """goldpinger's results node by node: rows ping, columns are pinged; nodes grouped by CNI (a coloured
    band names each group); a cell is green (OK), red (failed) or grey (no result)."""
    nodes = list((matrix or {}).get("nodes") or [])
    results = (matrix or {}).get("results") or {}
    longest = 7 * max((len(str(n.get("name"))) for n in nodes), default=10)  # px at 12px sans-serif
    label_w, band = max(120, longest + 20), 14
    size = max(1, len(nodes))
    top = int(longest * 0.87) + 20  # column labels, rotated 60 degrees
    width = max(label_w + band + cell * size + longest // 2 + 20, 640)
    height = top + band + cell * size + 40
    out = [f'<svg id="{escape(svg_id)}" class="mesh-matrix" xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" role="img">',
           f"<title>{escape(title)}: nodes x nodes, grouped by CNI</title>"]
    if not nodes:
        reason = (matrix or {}).get("error") or "no goldpinger results"
        out.append(f'<text x="10" y="20" {_FONT}>{escape(str(reason))}</text></svg>')
        return "".join(out)
    x0, y0 = label_w + band, top + band
    groups: dict[str, list[int]] = {}
    for i, node in enumerate(nodes):
        groups.setdefault(str(node.get("cni")), []).append(i)
    for cni, idx in groups.items():  # CNI bands along both axes
        colour = CNI_COLOURS.get(cni, "#777")
        first, n = min(idx), len(idx)
        out.append(f'<rect class="cni-group" x="{x0 + first * cell}" y="{top}" width="{n * cell}" height="{band - 2}" '
                   f'fill="{colour}"><title>{escape(cni)}</title></rect>')
        out.append(f'<rect x="{label_w}" y="{y0 + first * cell}" width="{band - 2}" height="{n * cell}" '
                   f'fill="{colour}"><title>{escape(cni)}</title></rect>')
    for i, node in enumerate(nodes):
        name = escape(str(node.get("name")))
        y = y0 + i * cell
        out.append(f'<text x="{label_w - 6}" y="{y + cell * 0.65:.1f}" text-anchor="end" {_FONT}>{name}</text>')
        cx = x0 + i * cell + cell * 0.65
        out.append(f'<text x="{cx:.1f}" y="{top - 4}" transform="rotate(-60 {cx:.1f} {top - 4})" {_FONT}>{name}</text>')
    for i, src in enumerate(nodes):
        row = results.get(src.get("name")) or {}
        for j, dst in enumerate(nodes):
            result = str(row.get(dst.get("name"), "missing"))
            out.append(f'<rect class="cell {escape(result)}" x="{x0 + j * cell + 1}" y="{y0 + i * cell + 1}" '
                       f'width="{cell - 2}" height="{cell - 2}" fill="{RESULT_COLOURS.get(result, "#999")}">'
                       f'<title>{escape(str(src.get("name")))} -&gt; {escape(str(dst.get("name")))}: '
                       f'{escape(result)}</title></rect>')
    legend_y = y0 + size * cell + 22
    lx = 10
    for text, colour in [*((f"ping {k}", v) for k, v in RESULT_COLOURS.items()),
                         *((k, v) for k, v in CNI_COLOURS.items())]:
        out.append(f'<rect x="{lx}" y="{legend_y - 10}" width="12" height="12" fill="{colour}"/>'
                   f'<text x="{lx + 16}" y="{legend_y}" {_FONT}>{escape(text)}</text>')
        lx += 16 + 8 * len(text) + 14
    out.append("</svg>")
    return "".join(out)
