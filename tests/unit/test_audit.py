"""Change records: one log line with before/after, a JSON round trip for XCom, the run's report."""

from __future__ import annotations

import json
import logging

import pytest

from cilium_migration.audit import Change, log_changes, report


def test_a_change_logs_its_target_and_before_after() -> None:
    c = Change("label", "Node", "ip-1", before={"cni": None}, after={"cni": "aws-cni"})
    assert c.log_line() == 'label Node ip-1: before={"cni":null} after={"cni":"aws-cni"}'


def test_a_dry_run_change_says_would() -> None:
    c = Change("patch", "DaemonSet", "aws-node", "kube-system", before=1, after=2, dry_run=True)
    assert c.log_line().startswith("[dry run] would patch DaemonSet kube-system/aws-node")


def test_changes_survive_xcom_as_json() -> None:
    c = Change("scale", "Nodegroup", "ng-cilium", before={"desiredSize": 0}, after={"desiredSize": 3})
    assert Change.from_dict(json.loads(json.dumps(c.to_dict()))) == c


def test_log_changes_logs_each_and_returns_dicts(caplog: pytest.LogCaptureFixture) -> None:
    changes = [Change("cordon", "Node", "a"), Change("cordon", "Node", "b")]
    with caplog.at_level(logging.INFO):
        out = log_changes(changes)
    assert [d["name"] for d in out] == ["a", "b"]
    assert sum("CHANGE cordon Node" in r.message for r in caplog.records) == 2


def test_report_lists_every_change_in_task_order_with_the_outcome() -> None:
    text = report({
        "fence_old_cni.label_old_nodes": [Change("label", "Node", "a", after={"cni": "aws-cni"}).to_dict()],
        "preflight.checks": [],
        "cutover.move_workloads": [Change("evict", "Pod", "web-1", "default").to_dict()],
    }, outcome="completed", run_id="manual__1", task_states={"x": "success", "y": "failed"})
    assert "**Outcome:** completed" in text
    assert text.index("label | Node a") < text.index("evict | Pod default/web-1")
    assert "**Failed tasks:** y" in text
    assert text.rstrip().endswith("2 change(s).")
