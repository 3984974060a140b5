"""The report rendered from a fixed report (``test_report_model.sample_report``): Markdown, HTML, SVG.

- every section is there: parameters and window, timeline, approvals with their approver, changes of every
  try, mesh verdicts, the mesh matrix, the cluster before and after;
- no Secret value reaches any of them (the change records hold fingerprints);
- the mesh matrix is nodes x nodes grouped by CNI, each cell coloured by its result;
- every value is escaped: a run id or a node name cannot inject markup.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from xml.etree import ElementTree

import pytest

from cilium_migration.report import markdown, page, svg
from cilium_migration.report.model import Phase
from tests.unit.test_report_model import SECRET_VALUE, at, sample_report


def test_markdown_has_every_section() -> None:
    text = markdown.render(sample_report())
    for heading in ("## Parameters", "## Timeline", "## Approvals", "## Changes", "## Mesh",
                    "## Cluster before (preflight snapshot)", "## Cluster after"):
        assert heading in text
    assert "- **Outcome:** completed" in text
    assert "- **Window:** 0 2 * * SUN (Europe/Paris), 120 minutes" in text
    assert "| approve_cutover.approve | 1 | Cut over dc-migrate to Cilium? | proceed | alice |" in text
    assert "| cilium_nodes.install_cilium | 2 | create | Secret kube-system/cilium-ca |" in text
    assert "| cutover.cordon_old_nodes | 1 | cordon | Node ip-10-0-1-1 |" in text
    assert "| cilium_nodes.mesh_healthy | UNHEALTHY | aws-cni<->cilium |" in text
    assert "| ip-10-0-1-1 (aws-cni) | ✓ | ✗ |" in text
    assert "| ng-1 | 3 | 3 | 3 |" in text and "| ng-1 | 0 | 3 | 0 |" in text
    assert "3 change(s)." in text


@pytest.mark.parametrize("render", [markdown.render, page.render], ids=["markdown", "html"])
def test_no_secret_value_is_shown(render: object) -> None:
    text = render(sample_report())  # type: ignore[operator]
    assert SECRET_VALUE not in text
    assert "sha256:" in text  # the Secret's key is listed with its fingerprint


def test_the_page_shows_approvals_changes_and_both_plots() -> None:
    html = page.render(sample_report(), now=at(100))
    approvals = re.search(r'<table id="approvals">.*?</table>', html)
    assert approvals and '<span class="approver">alice</span>' in approvals.group(0)
    changes = re.search(r'<table id="changes">.*?</table>', html)
    assert changes and changes.group(0).count("<tr>") == 1 + 3
    assert html.count('<svg id="timeline"') == 1 and html.count('<svg id="mesh-matrix"') == 1
    assert html.count('<svg id="mesh-matrix-cilium_nodes.mesh_healthy"') == 1  # the gate across both CNIs
    assert 'href="?format=md"' in html and 'href="?format=html"' in html
    assert "<script" not in html
    assert 'id="outcome" class="ok">completed<' in html


def test_the_page_is_well_formed_xml_in_its_plots() -> None:
    html = page.render(sample_report(), now=at(100))
    for plot in re.findall(r"<svg .*?</svg>", html):
        ElementTree.fromstring(plot)  # raises on broken markup


def test_the_mesh_matrix_is_nodes_by_nodes_grouped_by_cni() -> None:
    plot = ElementTree.fromstring(svg.mesh_matrix(sample_report().mesh_matrix))
    ns = "{http://www.w3.org/2000/svg}"
    cells = [r for r in plot.iter(f"{ns}rect") if (r.get("class") or "").startswith("cell")]
    assert [c.get("class") for c in cells] == ["cell ok", "cell failed", "cell ok", "cell ok"]
    assert {c.get("fill") for c in cells if c.get("class") == "cell failed"} == {svg.RESULT_COLOURS["failed"]}
    groups = [r.find(f"{ns}title").text for r in plot.iter(f"{ns}rect")  # type: ignore[union-attr]
              if r.get("class") == "cni-group"]
    assert groups == ["aws-cni", "cilium"]


def test_the_timeline_has_a_bar_per_started_phase_and_a_mark_per_answer() -> None:
    report = sample_report()
    plot = ElementTree.fromstring(svg.timeline(report.phases, report.approvals))
    ns = "{http://www.w3.org/2000/svg}"
    bars = [r.get("class") for r in plot.iter(f"{ns}rect")]
    assert bars == ["phase success", "phase failed", "phase success", "phase success"]
    assert len(list(plot.iter(f"{ns}polygon"))) == 1  # alice's answer


def test_a_phase_still_going_runs_to_now() -> None:
    phases = [Phase("preflight", at(0), at(10), "success", 1), Phase("baseline", at(10), None, "running", 1)]
    plot = ElementTree.fromstring(svg.timeline(phases, now=at(40)))
    widths = [float(r.get("width") or 0) for r in plot.iter("{http://www.w3.org/2000/svg}rect")]
    assert widths[1] == pytest.approx(3 * widths[0], rel=0.01)


def test_values_are_escaped() -> None:
    evil = "<img src=x onerror=alert(1)>"
    report = replace(sample_report(), run_id=evil, mesh_matrix={"nodes": [{"name": evil, "cni": "cilium"}],
                                                                "results": {}})
    html = page.render(report, now=datetime.now(UTC))
    assert evil not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
